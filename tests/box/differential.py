"""One Experiment, two runners: the dry-run (`katib-digits tune`) and Katib on the box. A deterministic trial
(its metric curve a function of its parameters) makes the two comparable field by field; `outcome` reduces each
runner's answer to the fields the promise covers, so a difference prints as a diff of two dicts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipeline.image import IMAGE
from tests.box.box import NAMESPACE, get, kubectl, trials_of
from tests.conftest import katib_digits

# accuracy = 1 - (x-0.5)^2 - 0.1 (y-3)^2 - 0.1/epoch, loss = 1 - accuracy: best at x=0.5, y=3. PAUSE seconds
# after each epoch's line: Katib's StdOut collector fails a trial that ends before the sidecar finds its process
# (docs/dryrun.md), and tests/box/test_faults.py needs a trial running to disturb. MODE picks a
# fault: ok, crash (exit 3, no metric), silent (runs, prints no metric), sleep (outlives any deadline), mixed
# (silent and short where x < 0.3, else ok). The Job
# has backoffLimit 0, so a crash is one failed pod on both runners, not Kubernetes' six retries with backoff.
TRIAL = """python3 -c '
import sys, time
x, y, mode, epochs, pause = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
if mode == "crash":
    print("boom", file=sys.stderr)
    sys.exit(3)
if mode == "sleep":
    time.sleep(300)
if mode == "mixed" and x < 0.3:
    print("epoch 1 done", flush=True)
    time.sleep(pause)
    sys.exit(0)
base = 1 - (x - 0.5) ** 2 - 0.1 * (y - 3) ** 2
for e in range(1, epochs + 1):
    if mode == "silent":
        print(f"epoch {e} done", flush=True)
    else:
        print(f"epoch={e} accuracy={base - 0.1 / e:.6f} loss={1 - base + 0.1 / e:.6f}", flush=True)
    time.sleep(pause)
' ${trialParameters.x} ${trialParameters.y} MODE EPOCHS PAUSE"""  # no newline at the end: Katib appends its redirect

GRID_X = {"min": "0.1", "max": "0.9", "step": "0.4"}  # 0.1, 0.5, 0.9
GRID_Y = {"min": "2", "max": "4"}  # 2, 3, 4 (int, step 1)


def experiment(
    name: str,
    *,
    algorithm: str = "grid",
    mode: str = "ok",
    epochs: int | str = 3,  # or a reference, e.g. ${trialParameters.epochs}
    pause_s: float = 2,
    max_trials: int = 9,
    parallel: int = 3,
    max_failed: int = 3,
    goal: float | None = None,
    x: dict[str, str] | None = None,
    deadline_s: int | None = None,
    strategies: dict[str, str] | None = None,
    random_state: int | None = None,
    early_stopping: dict[str, str] | None = None,
) -> dict[str, Any]:
    objective: dict[str, Any] = {
        "type": "maximize",
        "objectiveMetricName": "accuracy",
        "additionalMetricNames": ["loss"],
    }
    if goal is not None:
        objective["goal"] = goal
    if strategies:
        objective["metricStrategies"] = [{"name": k, "value": v} for k, v in strategies.items()]
    job: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "training-container",
                        "image": IMAGE,
                        "command": [
                            "sh",
                            "-c",
                            TRIAL.replace("MODE", mode).replace("EPOCHS", str(epochs)).replace("PAUSE", str(pause_s)),
                        ],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                    }
                ],
            }
        },
    }
    if deadline_s is not None:
        job["activeDeadlineSeconds"] = deadline_s
    algo: dict[str, Any] = {"algorithmName": algorithm}
    if random_state is not None:
        algo["algorithmSettings"] = [{"name": "random_state", "value": str(random_state)}]
    raw: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "objective": objective,
            "algorithm": algo,
            "parallelTrialCount": parallel,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": max_failed,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": x or GRID_X},
                {"name": "y", "parameterType": "int", "feasibleSpace": GRID_Y},
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "retain": True,
                "trialParameters": [{"name": "x", "reference": "x"}, {"name": "y", "reference": "y"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": job},
            },
        },
    }
    if early_stopping is not None:
        raw["spec"]["earlyStopping"] = {
            "algorithmName": "medianstop",
            "algorithmSettings": [{"name": k, "value": v} for k, v in early_stopping.items()],
        }
    return raw


def dry_run(raw: dict[str, Any], out: Path, *options: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`katib-digits tune` on the same YAML (and `options`, e.g. --mount): its experiment.json, and its trials
    as trials.csv lists them."""
    path = out / f"{raw['metadata']['name']}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    done = katib_digits("tune", str(path), "--out", str(out / "run"), "--no-report", "--no-progress", *options)
    assert done.returncode in (0, 1), f"katib-digits tune: exit {done.returncode}: {done.stderr[-2000:]}"
    with open(out / "run" / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return json.loads((out / "run" / "experiment.json").read_text()), rows


def _number(text: str | None) -> float | str | None:
    if text in (None, "", "unavailable"):  # Katib's value for a metric it never saw
        return text
    return round(float(text), 6)


def _metrics(observation: dict[str, Any] | None) -> dict[str, dict[str, float | str | None]]:
    return {
        m["name"]: {k: _number(m.get(k)) for k in ("min", "max", "latest")}
        for m in (observation or {}).get("metrics", [])
    }


def _value(text: str) -> float | str:
    try:
        return round(float(text), 6)
    except ValueError:
        return text  # a categorical value


def _assignments(pairs: list[dict[str, str]]) -> tuple[tuple[str, float | str], ...]:
    return tuple(sorted((p["name"], _value(p["value"])) for p in pairs))


def experiment_outcome(exp: dict[str, Any]) -> dict[str, Any]:
    """The Experiment's end, in either runner's experiment object: the true terminal condition, the counts by
    state, and the optimal trial's assignments and observation (its name differs between runners)."""
    status = exp.get("status", {})
    terminal = [
        (c["type"], c["reason"])
        for c in status.get("conditions", [])
        if c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
    ]
    best = status.get("currentOptimalTrial") or {}
    return {
        "terminal": terminal,
        "counts": {
            k: status.get(k, 0)
            for k in (
                "trials",
                "trialsSucceeded",
                "trialsFailed",
                "trialsEarlyStopped",
                "trialMetricsUnavailable",
                "trialsKilled",
                "trialsRunning",
                "trialsPending",
            )
        },
        "optimal": {
            "assignments": _assignments(best.get("parameterAssignments") or []),
            "metrics": _metrics(best.get("observation")),
        },
    }


def katib_trials(name: str) -> list[dict[str, Any]]:
    """Katib's trials of `name`: assignments, final condition (type, reason) and each metric's latest value."""
    out = []
    for t in trials_of(name):
        final = [
            (c["type"], c["reason"])
            for c in t["status"].get("conditions", [])
            if c["status"] == "True" and c["type"] not in ("Created", "Running")
        ]
        latest = {m: v["latest"] for m, v in _metrics(t["status"].get("observation")).items()}
        out.append(
            {
                "assignments": _assignments(t["spec"]["parameterAssignments"]),
                "end": final[-1] if final else None,
                "latest": latest,
            }
        )
    return sorted(out, key=lambda t: t["assignments"])


def dry_run_trials(
    rows: list[dict[str, str]], metric_names: list[str], params: tuple[str, ...] = ("x", "y")
) -> list[dict[str, Any]]:
    """The dry-run's trials.csv in katib_trials' shape."""
    out = []
    for r in rows:
        latest = {m: _number(r.get(f"{m}_latest")) for m in metric_names if r.get(f"{m}_latest")}
        out.append(
            {
                "assignments": _assignments([{"name": p, "value": r[p]} for p in params]),
                "end": (r["state"], r["reason"]),
                "latest": latest,
            }
        )
    return sorted(out, key=lambda t: t["assignments"])


def katib_order(name: str) -> list[tuple[tuple[str, float | str], ...]]:
    """The points in the order Katib's suggestion service answered them (the Suggestion's list)."""
    suggestions = get("-n", NAMESPACE, "suggestion", name)["status"].get("suggestions") or []
    return [_assignments(s["parameterAssignments"]) for s in suggestions]


def dry_run_order(
    rows: list[dict[str, str]], params: tuple[str, ...] = ("x", "y")
) -> list[tuple[tuple[str, float | str], ...]]:
    """The points in the order the dry-run asked for them (trials.csv lists trials by number)."""
    return [_assignments([{"name": p, "value": r[p]} for p in params]) for r in rows]


def lost_suggestions(name: str) -> int:
    """How many assignments Katib's suggestion service handed out for Experiment `name` that its Suggestion never
    recorded: the controller asks the service, then writes the answer into the Suggestion's status; when that
    write conflicts ("Update suggestion instance status failed, reconciler requeued") it asks again, and the
    service, which already moved on, answers new points (Katib v0.19 `suggestion_controller.go`,
    `suggestionclient.go`; kubeflow/katib#1116). For a grid, a lost point is never tried and another is tried
    twice. Read from the katib-controller's log since the Experiment was created."""
    created = get("-n", NAMESPACE, "experiment", name)["metadata"]["creationTimestamp"]
    log = kubectl("-n", "kubeflow", "logs", "deploy/katib-controller", f"--since-time={created}", timeout=60)
    answered = 0
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "Getting suggestions" and entry.get("Suggestion") == {
            "name": name,
            "namespace": NAMESPACE,
        }:
            answered += int(entry["Number of response parameters"])
    recorded = get("-n", NAMESPACE, "suggestion", name)["status"].get("suggestionCount", 0)
    return answered - recorded
