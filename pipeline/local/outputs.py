"""What a dry-run leaves behind: experiment.json (Katib's Experiment object, as
`kubectl get experiment NAME -o json` shows it), trials.json (its Trials, as `kubectl get trials -l
katib.kubeflow.org/experiment=NAME -o json` lists them), trials.csv, report.html, and
the progress bar while it runs. Everything here reads one `Snapshot`."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.katib import status as ks
from pipeline.katib.experiment import Experiment, Objective
from pipeline.local.study import INTERRUPTED, katib_state, outcome

if TYPE_CHECKING:
    import optuna

INTERRUPTED_ANNOTATION = "katib-digits/interrupted-by-signal"  # the signal that stopped the run


@dataclass(frozen=True)
class Snapshot:
    """A dry-run's state at one moment: what the output files are written from."""

    experiment: Experiment
    trials: list[Any]  # the study's recorded trials (optuna FrozenTrial), in creation order
    study: Any  # the optuna Study, for the plots
    out: Path
    start_time: str
    end: tuple[str, str, str] | None
    storage_url: str
    notes: list[str]
    trial_args: list[str]
    metric_names: list[str]
    signal: int | None = None
    html: bool = True
    hang: str | None = None  # where Katib would stay Running forever (the local run stopped there)
    end_time: float | None = None  # when the Experiment first reached `end` (a rerun of a finished one keeps it)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(epoch: float | None) -> str | None:
    return None if epoch is None else _utc(epoch)


def last_condition(snap: Snapshot) -> tuple[str, str, str]:
    """The Experiment's latest condition (type, reason, message): its end, or Running with why the
    local run stopped short of one."""
    if snap.end is not None:
        return snap.end
    message = "Experiment is running"
    if snap.signal:
        message += " (local dry-run interrupted: run the same command again to resume)"
    elif snap.hang:
        message += f" (local dry-run stopped: {snap.hang})"
    return ks.RUNNING, "ExperimentRunning", message


def experiment_object(snap: Snapshot) -> dict[str, Any]:
    """Katib's Experiment with status, built from the study's trials."""
    exp = snap.experiment
    now = _utc(snap.end_time if snap.end is not None and snap.end_time else time.time())
    outcomes = [outcome(t) for t in snap.trials]
    status: dict[str, Any] = {"startTime": snap.start_time, "trials": len(outcomes)}
    for state, list_key, count_key in ks.STATUS_LISTS:
        names = [o.name for o in outcomes if o.state == state]
        status[count_key] = len(names)
        status[list_key] = names
    conditions = [ks.condition("Created", "True", "ExperimentCreated", "Experiment is created", snap.start_time)]
    ctype, reason, message = last_condition(snap)
    if snap.end is None:
        conditions.append(ks.condition(ctype, "True", reason, message, now))
    else:
        conditions.append(ks.condition("Running", "False", "ExperimentRunning", "Experiment is running", now))
        conditions.append(ks.condition(ctype, "True", reason, message, now))
        status["completionTime"] = now
    status["conditions"] = conditions
    status["lastReconcileTime"] = now
    best, _ = ks.optimal_trial(outcomes, exp.objective)
    status["currentOptimalTrial"] = ks.optimal_trial_object(best, [p.name for p in exp.parameters])
    annotations = {
        "katib-digits/dry-run": "true",
        "katib-digits/storage": snap.storage_url,
        "katib-digits/algorithm-backend": "; ".join(snap.notes),
    }
    if snap.trial_args:
        annotations["katib-digits/trial-args"] = " ".join(snap.trial_args)
    if snap.signal:
        annotations[INTERRUPTED_ANNOTATION] = str(int(snap.signal))
    metadata = {
        "name": exp.name,
        "namespace": exp.namespace or "default",
        "creationTimestamp": snap.start_time,
        "annotations": annotations,
    }
    if (exp.raw.get("metadata") or {}).get("labels"):
        metadata["labels"] = exp.raw["metadata"]["labels"]
    return {
        "apiVersion": exp.raw["apiVersion"],
        "kind": "Experiment",
        "metadata": metadata,
        "spec": exp.spec,
        "status": status,
    }


def trial_object(snap: Snapshot, trial: Any) -> dict[str, Any] | None:
    """One recorded trial as Katib's Trial object; None for one not started (queued for a retry) or one a
    dry-run interrupted (Katib has no such trial: the next run starts it again)."""
    a, state = trial.user_attrs, katib_state(trial)
    if state is None or state == INTERRUPTED or "name" not in a:
        return None
    exp = snap.experiment
    started = _utc(a.get("start") or time.time())
    status: dict[str, Any] = {"startTime": started}
    created = ks.condition("Created", "True", "TrialCreated", "Trial is created", started)
    if state == ks.RUNNING:
        status["conditions"] = [
            created,
            ks.condition(state, "True", "TrialRunning", "Trial is running", _utc(time.time())),
        ]
    else:
        ended = _utc(a.get("end") or time.time())
        status["completionTime"] = ended
        status["conditions"] = [
            created,
            ks.condition(ks.RUNNING, "False", "TrialRunning", "Trial is running", ended),
            ks.condition(state, "True", _text(a.get("reason")), _text(a.get("message")), ended),
        ]
    if a.get("observation") is not None:
        status["observation"] = {"metrics": a["observation"]}
    order = [p.name for p in exp.parameters]
    assignments = a.get("assignments") or {}
    return {
        "apiVersion": exp.raw["apiVersion"],
        "kind": "Trial",
        "metadata": {
            "name": a["name"],
            "namespace": exp.namespace or "default",
            "labels": {ks.EXPERIMENT_LABEL: exp.name},
        },
        "spec": {
            "objective": exp.spec.get("objective"),
            "parameterAssignments": [{"name": n, "value": assignments[n]} for n in order if n in assignments],
        },
        "status": status,
    }


def trials_object(snap: Snapshot) -> dict[str, Any]:
    """The Experiment's Trials as `kubectl get trials -l katib.kubeflow.org/experiment=NAME -o json` lists them."""
    items = [t for t in (trial_object(snap, trial) for trial in snap.trials) if t is not None]
    return {"apiVersion": "v1", "kind": "List", "items": items}


@dataclass(frozen=True)
class TrialRow:
    """One recorded trial as trials.csv and report.html's table list it (Katib strings, as recorded)."""

    name: str
    state: str  # Katib's condition, Interrupted, or "" for a trial queued for a retry
    reason: str
    assignments: list[str]  # in spec.parameters order
    objective: str
    latest: list[str]  # each metric's latest value, in Snapshot.metric_names order
    start: float | None
    end: float | None
    attempts: str
    message: str

    @property
    def duration_s(self) -> float | None:
        return self.end - self.start if self.start and self.end else None

    def csv_cells(self) -> list[Any]:
        duration = self.duration_s
        return [
            self.name,
            self.state,
            self.reason,
            *self.assignments,
            self.objective,
            *self.latest,
            _ts(self.start),
            _ts(self.end),
            "" if duration is None else f"{duration:.2f}",
            self.attempts,
            self.message,
        ]


def _text(value: Any) -> str:
    """A recorded value as csv.writer writes it: None is empty."""
    return "" if value is None else str(value)


def trial_row(trial: Any, parameter_names: list[str], metric_names: list[str]) -> TrialRow:
    a = trial.user_attrs
    obs = {m["name"]: m.get("latest", "") for m in a.get("observation") or []}
    return TrialRow(
        name=a["name"],
        state=katib_state(trial) or "",
        reason=_text(a.get("reason")),
        assignments=[_text(a["assignments"].get(n)) for n in parameter_names],
        objective=_text(a.get("objective")),
        latest=[_text(obs.get(m)) for m in metric_names],
        start=a.get("start"),
        end=a.get("end"),
        attempts=_text(a.get("attempts")),
        message=_text(a.get("message")),
    )


def trial_rows(snap: Snapshot) -> list[TrialRow]:
    """Every recorded trial, in creation order: the rows of trials.csv and of report.html's table."""
    names = [p.name for p in snap.experiment.parameters]
    return [trial_row(t, names, list(snap.metric_names)) for t in snap.trials]


def trials_csv_header(snap: Snapshot) -> list[str]:
    return [
        "name",
        "state",
        "reason",
        *[p.name for p in snap.experiment.parameters],
        "objective",
        *[f"{m}_latest" for m in snap.metric_names],
        "start",
        "end",
        "duration_s",
        "attempts",
        "message",
    ]


def write_trials_csv(snap: Snapshot, path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(trials_csv_header(snap))
        for row in trial_rows(snap):
            w.writerow(row.csv_cells())
    os.replace(tmp, path)


# --- report.html: the outcome, every trial (a sortable table), then Optuna's plots -------------------

NUMERIC_PARAMETER_TYPES = ("double", "int", "discrete")  # Katib's discrete values are numbers
QUEUED = "Queued"  # a trial waiting for its retry (no Katib condition yet)

# Sorts the trial table by a clicked column header; numeric columns by value, with blanks and
# non-numbers ("unavailable") last either way. Inline: the report opens offline.
SORT_SCRIPT = """
<script>
(function () {
  function num(s) { return s.trim() === "" ? NaN : Number(s); }
  function compare(x, y, numeric, asc) {
    if (numeric) {
      var a = num(x), b = num(y);
      if (isNaN(a) || isNaN(b)) { return isNaN(a) - isNaN(b); }
      return asc ? a - b : b - a;
    }
    var c = x.localeCompare(y);
    return asc ? c : -c;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], numeric = th.dataset.type === "number";
        Array.from(body.rows)
          .sort(function (r, s) {
            return compare(r.cells[col].textContent, s.cells[col].textContent, numeric, asc);
          })
          .forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
</script>
"""

STYLE = """
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th button { all: inherit; cursor: pointer; border: 0; padding: 0; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
tr.best { background: #eef7ee; font-weight: bold; }
</style>
"""


def _clock(seconds: float) -> str:
    """Seconds as H:MM:SS, or as seconds under a minute."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _epoch(utc: str) -> float:
    return datetime.strptime(utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def state_counts(outcomes: list[ks.TrialOutcome]) -> dict[str, int]:
    """Trials by state: Katib's completed conditions (zeros too, as the Experiment's status counts
    them), then any other state present (Running, Interrupted, Queued)."""
    c = ks.counts(outcomes)
    for o in outcomes:
        if o.state not in ks.COMPLETED:
            state = o.state or QUEUED
            c[state] = c.get(state, 0) + 1
    return c


def condition_html(snap: Snapshot) -> str:
    ctype, reason, message = last_condition(snap)
    return (
        f"<p id='condition'>Condition: <strong>{escape(ctype)}</strong>, reason "
        f"<strong>{escape(reason)}</strong>: {escape(message)}</p>"
    )


def best_trial_html(snap: Snapshot, best: ks.TrialOutcome | None) -> str:
    objective = snap.experiment.objective
    if best is None:
        return f"<p id='best'>No trial has reported the objective metric {escape(objective.metric)}.</p>"
    assignments = best.assignments or {}
    params = "".join(
        f"<li>{escape(p.name)} = {escape(assignments[p.name])}</li>"
        for p in snap.experiment.parameters
        if p.name in assignments
    )
    return (
        f"<p id='best'>Best trial: <strong>{escape(best.name)}</strong>, {escape(objective.metric)} "
        f"({escape(objective.type)}) = <strong>{escape(best.objective)}</strong></p>"
        f"<ul id='best-parameters'>{params}</ul>"
    )


def counts_html(outcomes: list[ks.TrialOutcome]) -> str:
    parts = ", ".join(f"{escape(state)} {n}" for state, n in state_counts(outcomes).items())
    return f"<p id='counts'>{len(outcomes)} trials: {parts}</p>"


def times_html(snap: Snapshot, rows: list[TrialRow], now: float) -> str:
    """The Experiment's wall time (start to now, the end's time) and the sum of the trials' own
    wall times (more than the first with parallel trials). No CPU time: the dry-run records none."""
    started = _epoch(snap.start_time)
    until = "ended" if snap.end is not None else "written"
    durations = [d for d in (r.duration_s for r in rows) if d is not None]
    return (
        f"<p id='times'>Started {escape(snap.start_time)}, {until} {escape(_utc(now))}: wall time "
        f"{_clock(now - started)}. The {len(durations)} trials with a start and an end ran "
        f"{_clock(sum(durations))} in all (the sum of their wall times; the dry-run records no CPU time).</p>"
    )


def outcome_html(
    snap: Snapshot, outcomes: list[ks.TrialOutcome], best: ks.TrialOutcome | None, rows: list[TrialRow], now: float
) -> str:
    """How the Experiment ended, its best trial, the trials by state and the time it took."""
    notes = "<br>".join(escape(n) for n in snap.notes)
    return (
        "<section id='outcome'><h2>Outcome</h2>"
        + condition_html(snap)
        + best_trial_html(snap, best)
        + counts_html(outcomes)
        + times_html(snap, rows, now)
        + (f"<p id='notes'>{notes}</p>" if notes else "")
        + "</section>"
    )


def _th(label: str, column: str, numeric: bool) -> str:
    kind = "number" if numeric else "text"
    return f"<th data-column='{escape(column)}' data-type='{kind}'><button type='button'>{escape(label)}</button></th>"


def _td(value: str, numeric: bool) -> str:
    return f"<td class='number'>{escape(value)}</td>" if numeric else f"<td>{escape(value)}</td>"


def trials_table_html(snap: Snapshot, rows: list[TrialRow], best_name: str | None) -> str:
    """Every trial as Katib's UI lists them: name, state, each parameter, objective, duration."""
    params = snap.experiment.parameters
    numeric = [p.type in NUMERIC_PARAMETER_TYPES for p in params]
    heads = [_th("Name", "name", False), _th("State", "state", False)]
    heads += [_th(p.name, f"parameter:{p.name}", n) for p, n in zip(params, numeric, strict=True)]
    heads += [_th(f"{snap.experiment.objective.metric} (objective)", "objective", True)]
    heads += [_th("Duration (s)", "duration", True)]
    body = []
    for r in rows:
        duration = "" if r.duration_s is None else f"{r.duration_s:.2f}"
        cells = [_td(r.name, False), _td(r.state or QUEUED, False)]
        cells += [_td(v, n) for v, n in zip(r.assignments, numeric, strict=True)]
        cells += [_td(r.objective, True), _td(duration, True)]
        best = " class='best'" if r.name == best_name else ""
        body.append(f"<tr{best}>{''.join(cells)}</tr>")
    return (
        f"<section id='trials'><h2>Trials ({len(rows)})</h2><p>Click a column header to sort.</p>"
        f"<table class='sortable'><thead><tr>{''.join(heads)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def plots_html(study: optuna.Study) -> str:
    """Optuna's plots (plotly.js embedded once); a plot that cannot be drawn is skipped with a note."""
    import optuna.visualization as vis
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    parts = []
    js: bool = True  # embed plotly.js once: the report opens offline
    plots: list[tuple[str, Callable[[optuna.Study], Any]]] = [
        ("Optimization history", vis.plot_optimization_history),
        ("Parameter importances", vis.plot_param_importances),
        ("Parallel coordinates", vis.plot_parallel_coordinate),
        ("Intermediate values (objective per report)", vis.plot_intermediate_values),
    ]
    for title, fn in plots:
        try:
            if len(complete) < (2 if fn is vis.plot_param_importances else 1):
                raise ValueError("not enough completed trials")
            fig = fn(study)
            parts.append(f"<h2>{title}</h2>" + fig.to_html(full_html=False, include_plotlyjs=js))
            js = False
        except Exception as exc:  # noqa: BLE001 - a missing plot must not fail the run
            parts.append(f"<h2>{title}</h2><p>not drawn: {escape(type(exc).__name__)}: {escape(str(exc))}</p>")
    return "<section id='plots'>" + "\n".join(parts) + "</section>"


def report_html(snap: Snapshot, now: float) -> str:
    """The whole page: the outcome, the trial table, then the plots; one self-contained file."""
    rows = trial_rows(snap)
    outcomes = [outcome(t) for t in snap.trials]
    best, _ = ks.optimal_trial(outcomes, snap.experiment.objective)  # as experiment_object picks it
    name = escape(snap.experiment.name)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title>{STYLE}</head><body>"
        f"<h1>Experiment {name} (local dry-run)</h1>"
        + outcome_html(snap, outcomes, best, rows, now)
        + trials_table_html(snap, rows, best.name if best else None)
        + plots_html(snap.study)
        + SORT_SCRIPT
        + "</body></html>"
    )


def write_html(snap: Snapshot, path: Path) -> None:
    """report.html: what a person reads after a tune (see report_html)."""
    now = snap.end_time if snap.end is not None and snap.end_time else time.time()
    path.write_text(report_html(snap, now), encoding="utf-8")


def write(snap: Snapshot) -> dict[str, Any]:
    """experiment.json and trials.json (atomically: a reader never sees half a file), trials.csv and, once the
    run has ended, report.html; returns the Experiment object."""
    obj = experiment_object(snap)
    tmp = snap.out / "experiment.json.tmp"
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, snap.out / "experiment.json")
    tmp = snap.out / "trials.json.tmp"
    tmp.write_text(json.dumps(trials_object(snap), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, snap.out / "trials.json")
    write_trials_csv(snap, snap.out / "trials.csv")
    if snap.html and snap.end is not None:
        write_html(snap, snap.out / "report.html")
    return obj


class Progress:
    """tqdm bar: completed trials of maxTrialCount, with running count and best so far."""

    def __init__(self, name: str, total: int | None, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit="trial", leave=True)

    def update(self, outcomes: list[ks.TrialOutcome], objective: Objective, running: int) -> None:
        if self.bar is None:
            return
        c = ks.counts(outcomes)
        best, _ = ks.optimal_trial(outcomes, objective)
        self.bar.n = sum(c.values())
        self.bar.set_postfix(
            running=running,
            failed=c[ks.FAILED] + c[ks.METRICS_UNAVAILABLE],
            best=best.objective if best else "-",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
