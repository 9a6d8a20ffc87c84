"""What a dry-run leaves behind: experiment.json (Katib's Experiment object, as
`kubectl get experiment NAME -o json` shows it), trials.csv, report.html, and
the progress bar while it runs. Everything here reads one `Snapshot`."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.katib import status as ks
from pipeline.katib.experiment import Experiment, Objective
from pipeline.local.study import katib_state, outcome

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


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(epoch: float | None) -> str | None:
    return None if epoch is None else _utc(epoch)


def experiment_object(snap: Snapshot) -> dict[str, Any]:
    """Katib's Experiment with status, built from the study's trials."""
    exp = snap.experiment
    now = _utc(time.time())
    outcomes = [outcome(t) for t in snap.trials]
    status: dict[str, Any] = {"startTime": snap.start_time, "trials": len(outcomes)}
    for state, list_key, count_key in ks.STATUS_LISTS:
        names = [o.name for o in outcomes if o.state == state]
        status[count_key] = len(names)
        status[list_key] = names
    conditions = [ks.condition("Created", "True", "ExperimentCreated", "Experiment is created", snap.start_time)]
    if snap.end is None:
        message = "Experiment is running"
        if snap.signal:
            message += " (local dry-run interrupted: run the same command again to resume)"
        elif snap.hang:
            message += f" (local dry-run stopped: {snap.hang})"
        conditions.append(ks.condition("Running", "True", "ExperimentRunning", message, now))
    else:
        ctype, reason, message = snap.end
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


def write_trials_csv(snap: Snapshot, path: Path) -> None:
    names = [p.name for p in snap.experiment.parameters]
    extra = list(snap.metric_names)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "name",
                "state",
                "reason",
                *names,
                "objective",
                *[f"{m}_latest" for m in extra],
                "start",
                "end",
                "duration_s",
                "attempts",
                "message",
            ]
        )
        for t in snap.trials:
            a = t.user_attrs
            obs = {m["name"]: m.get("latest", "") for m in a.get("observation") or []}
            start, end = a.get("start"), a.get("end")
            w.writerow(
                [
                    a["name"],
                    katib_state(t),
                    a.get("reason", ""),
                    *[a["assignments"].get(n, "") for n in names],
                    a.get("objective", ""),
                    *[obs.get(m, "") for m in extra],
                    _ts(start),
                    _ts(end),
                    f"{end - start:.2f}" if start and end else "",
                    a.get("attempts", ""),
                    a.get("message", ""),
                ]
            )
    os.replace(tmp, path)


def write_html(snap: Snapshot, path: Path) -> None:
    """Optuna's plots (plotly) on one page; a plot that cannot be drawn is skipped with a note."""
    import optuna.visualization as vis
    from optuna.trial import TrialState

    study = snap.study
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
            parts.append(f"<h2>{title}</h2><p>not drawn: {type(exc).__name__}: {exc}</p>")
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>{0}</title></head><body>"
        "<h1>Experiment {0} (local dry-run)</h1><p>{1}</p>{2}</body></html>"
    ).format(snap.experiment.name, "<br>".join(snap.notes), "\n".join(parts))
    path.write_text(html, encoding="utf-8")


def write(snap: Snapshot) -> dict[str, Any]:
    """experiment.json (atomically: a reader never sees half a file), trials.csv and, once the
    run has ended, report.html; returns the Experiment object."""
    obj = experiment_object(snap)
    tmp = snap.out / "experiment.json.tmp"
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, snap.out / "experiment.json")
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
