"""What a person reads in the KFP UI after the tune step: a Markdown table of the
trials (the Markdown visualization) and an HTML summary (the HTML visualization)."""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any

from pipeline.katib.status import STATUS_LISTS, describe_conditions


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_trials(final: dict[str, Any], trials_csv: str | Path | None = None) -> str:
    """The best trial, the trial counts, and, when the local dry-run's trials.csv is there, every trial."""
    status = final.get("status") or {}
    best = status.get("currentOptimalTrial") or {}
    name = (final.get("metadata") or {}).get("name", "")
    lines = [
        f"## Experiment {name}",
        "",
        describe_conditions(final),
        "",
        "| trials | " + " | ".join(state for state, _, _ in STATUS_LISTS) + " |",
        "|---" * (len(STATUS_LISTS) + 1) + "|",
        f"| {status.get('trials', 0)} | "
        + " | ".join(str(status.get(count) or 0) for _, _, count in STATUS_LISTS)
        + " |",
        "",
    ]
    if best.get("bestTrialName"):
        lines += [f"### Best trial {best['bestTrialName']}", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {_cell(a['name'])} | {_cell(a['value'])} |" for a in best.get("parameterAssignments") or []]
        lines += ["", "| metric | min | max | latest |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(m['name'])} | {m.get('min', '')} | {m.get('max', '')} | {m.get('latest', '')} |"
            for m in (best.get("observation") or {}).get("metrics") or []
        ]
        lines.append("")
    if trials_csv:
        with open(trials_csv, newline="") as fh:
            rows = list(csv.reader(fh))
        if rows:
            lines += ["### Trials", "", "| " + " | ".join(map(_cell, rows[0])) + " |", "|---" * len(rows[0]) + "|"]
            lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows[1:]]
            lines.append("")
    return "\n".join(lines)


def html_report(final: dict[str, Any]) -> str:
    """A self-contained page with the same content (Katib's own UI has the plots on a cluster)."""
    status = final.get("status") or {}
    best = status.get("currentOptimalTrial") or {}
    rows = "".join(
        f"<tr><td>{html.escape(a['name'])}</td><td>{html.escape(str(a['value']))}</td></tr>"
        for a in best.get("parameterAssignments") or []
    )
    metrics = "".join(
        f"<tr><td>{html.escape(m['name'])}</td><td>{html.escape(str(m.get('max', '')))}</td>"
        f"<td>{html.escape(str(m.get('latest', '')))}</td></tr>"
        for m in (best.get("observation") or {}).get("metrics") or []
    )
    counts = ", ".join(f"{status.get(count)} {state}" for state, _, count in STATUS_LISTS if status.get(count))
    name = html.escape((final.get("metadata") or {}).get("name", ""))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head><body>"
        f"<h1>Experiment {name}</h1><p>{html.escape(describe_conditions(final))}</p>"
        f"<p>{status.get('trials', 0)} trials: {html.escape(counts)}</p>"
        f"<h2>Best trial {html.escape(best.get('bestTrialName', ''))}</h2>"
        f"<table border=1><tr><th>parameter</th><th>value</th></tr>{rows}</table>"
        f"<table border=1><tr><th>metric</th><th>max</th><th>latest</th></tr>{metrics}</table></body></html>"
    )
