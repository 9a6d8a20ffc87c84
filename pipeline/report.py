"""What a dry-run leaves behind: experiment.json (Katib's Experiment object, as
`kubectl get experiment NAME -o json` shows it), trials.csv, report.html, and
the progress bar while it runs."""
from __future__ import annotations

import csv
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.dryrun import DryRun

LISTS = (("Succeeded", "succeededTrialList", "trialsSucceeded"), ("Failed", "failedTrialList", "trialsFailed"),
         ("Killed", "killedTrialList", "trialsKilled"), ("EarlyStopped", "earlyStoppedTrialList", "trialsEarlyStopped"),
         ("MetricsUnavailable", "metricsUnavailableTrialList", "trialMetricsUnavailable"),
         ("Running", "runningTrialList", "trialsRunning"), ("Pending", "pendingTrialList", "trialsPending"))


def _ts(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(ctype: str, status: str, reason: str, message: str, at: str) -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": at, "lastTransitionTime": at}


def experiment_object(dry: "DryRun", end: tuple[str, str, str] | None) -> dict[str, Any]:
    """Katib's Experiment with status, built from the study's trials."""
    from pipeline.dryrun import INTERRUPTED_ANNOTATION

    now = _ts(time.time())
    trials = sorted(dry.trials(), key=lambda t: t.number)
    status: dict[str, Any] = {"startTime": dry.start_time, "trials": len(trials)}
    for state, list_key, count_key in LISTS:
        names = [t.user_attrs["name"] for t in trials if t.user_attrs.get("katib_state") == state]
        status[count_key] = len(names)
        status[list_key] = names
    conditions = [_condition("Created", "True", "ExperimentCreated", "Experiment is created", dry.start_time)]
    if end is None:
        conditions.append(_condition("Running", "True", "ExperimentRunning",
                                     "Experiment is running (local dry-run interrupted: run the same command again "
                                     "to resume)" if dry.signal else "Experiment is running", now))
    else:
        ctype, reason, message = end
        conditions.append(_condition("Running", "False", "ExperimentRunning", "Experiment is running", now))
        conditions.append(_condition(ctype, "True", reason, message, now))
        status["completionTime"] = now
    status["conditions"] = conditions
    status["lastReconcileTime"] = now
    best, _ = dry.best()
    optimal: dict[str, Any] = {"bestTrialName": "", "parameterAssignments": [], "observation": {"metrics": []}}
    if best is not None:
        a = best.user_attrs["assignments"]
        optimal = {"bestTrialName": best.user_attrs["name"],
                   "parameterAssignments": [{"name": p.name, "value": a[p.name]} for p in dry.algorithm.params],
                   "observation": {"metrics": best.user_attrs.get("observation") or []}}
    status["currentOptimalTrial"] = optimal
    annotations = {"katib-digits/dry-run": "true", "katib-digits/storage": dry.storage_url,
                   "katib-digits/algorithm-backend": "; ".join(dry.algorithm.notes)}
    if dry.trial_args:
        annotations["katib-digits/trial-args"] = " ".join(dry.trial_args)
    if dry.signal:
        annotations[INTERRUPTED_ANNOTATION] = str(int(dry.signal))
    metadata = {"name": dry.name, "namespace": (dry.exp.get("metadata") or {}).get("namespace", "default"),
                "creationTimestamp": dry.start_time, "annotations": annotations}
    if (dry.exp.get("metadata") or {}).get("labels"):
        metadata["labels"] = dry.exp["metadata"]["labels"]
    return {"apiVersion": dry.exp["apiVersion"], "kind": "Experiment", "metadata": metadata,
            "spec": dry.spec, "status": status}


def write_trials_csv(dry: "DryRun", path: Path) -> None:
    names = [p.name for p in dry.algorithm.params]
    extra = [m for m in dry.cspec.metric_names]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "state", "reason", *names, "objective", *[f"{m}_latest" for m in extra],
                    "start", "end", "duration_s", "attempts", "message"])
        for t in sorted(dry.trials(), key=lambda t: t.number):
            a = t.user_attrs
            obs = {m["name"]: m.get("latest", "") for m in a.get("observation") or []}
            start, end = a.get("start"), a.get("end")
            w.writerow([a["name"], a["katib_state"], a.get("reason", ""), *[a["assignments"].get(n, "") for n in names],
                        a.get("objective", ""), *[obs.get(m, "") for m in extra], _ts(start), _ts(end),
                        f"{end - start:.2f}" if start and end else "", a.get("attempts", ""), a.get("message", "")])
    os.replace(tmp, path)


def write_html(dry: "DryRun", path: Path) -> None:
    """Optuna's plots (plotly) on one page; a plot that cannot be drawn is skipped with a note."""
    import optuna.visualization as vis
    from optuna.trial import TrialState

    study = dry.study
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    parts = []
    js: bool = True  # embed plotly.js once: the report opens offline
    plots = [("Optimization history", vis.plot_optimization_history),
             ("Parameter importances", vis.plot_param_importances),
             ("Parallel coordinates", vis.plot_parallel_coordinate),
             ("Intermediate values (objective per report)", vis.plot_intermediate_values)]
    for title, fn in plots:
        try:
            if len(complete) < (2 if fn is vis.plot_param_importances else 1):
                raise ValueError("not enough completed trials")
            fig = fn(study)
            parts.append(f"<h2>{title}</h2>" + fig.to_html(full_html=False, include_plotlyjs=js))
            js = False
        except Exception as exc:  # noqa: BLE001 - a missing plot must not fail the run
            parts.append(f"<h2>{title}</h2><p>not drawn: {type(exc).__name__}: {exc}</p>")
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>{0}</title></head><body>"
            "<h1>Experiment {0} (local dry-run)</h1><p>{1}</p>{2}</body></html>").format(
        dry.name, "<br>".join(dry.algorithm.notes), "\n".join(parts))
    path.write_text(html, encoding="utf-8")


def write_outputs(dry: "DryRun", end: tuple[str, str, str] | None, html: bool = True) -> dict[str, Any]:
    obj = experiment_object(dry, end)
    out = dry.out
    tmp = out / "experiment.json.tmp"
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "experiment.json")  # atomic: a reader never sees half a file
    write_trials_csv(dry, out / "trials.csv")
    if html and end is not None:
        write_html(dry, out / "report.html")
    if dry.warnings and dry.progress:
        import click

        for w in dry.warnings:
            click.echo(f"warning: {w}", err=True)
    return obj


class Progress:
    """tqdm bar: completed trials of maxTrialCount, with running count and best so far."""

    def __init__(self, dry: "DryRun", enabled: bool):
        self.dry = dry
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=dry.max_trials, desc=dry.name, unit="trial", leave=True)

    def update(self) -> None:
        if self.bar is None:
            return
        c = self.dry.counts()
        best, _ = self.dry.best()
        self.bar.n = sum(c.values())
        self.bar.set_postfix(running=len(self.dry.active), failed=c["Failed"] + c["MetricsUnavailable"],
                             best=best.user_attrs.get("objective") if best else "-", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.close()


