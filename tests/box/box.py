"""The Katib box from a test: kubectl through scripts/cluster/kubectl, and the small-budget copy of a shipped
Experiment that the cluster tier applies (the Experiment's own trial template; only the budget changes)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from pipeline import lint
from pipeline.workflow import steps

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / "scripts" / "cluster" / "kubectl"
COLLECTOR = "metrics-logger-and-collector"  # the StdOut collector's sidecar Katib's pod webhook injects: it logs
# what the trial printed
NAMESPACE = "katib-digits"  # deploy/namespace.yaml: labelled for Katib's metrics-collector injection


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run([str(KUBECTL), *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def get(*args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def small_budget(path: Path, max_trials: int, rows: int = 300, epochs: int = 1) -> dict[str, Any]:
    """The pipeline's small-budget copy of `path` (steps.smoke_copy: trial requests of 100m so several fit the
    box's 2 CPUs), with `trialTemplate.retain`, so Katib keeps each finished trial's Job and pod to read."""
    small = steps.smoke_copy(
        lint.load(path), NAMESPACE, max_trials, rows, epochs, requests={"cpu": "100m", "memory": "512Mi"}
    )
    small.raw["spec"]["trialTemplate"]["retain"] = True
    lint.load(small.raw)  # still an Experiment Katib admits
    return small.raw


def apply_experiment(raw: dict[str, Any]) -> str:
    """kubectl apply, as README says (an earlier run of the same name deleted first); the Experiment's name."""
    name = raw["metadata"]["name"]
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--ignore-not-found", "--wait=true", timeout=300)
    kubectl("apply", "-f", "-", stdin=json.dumps(raw))  # JSON: Go reads an unquoted `y` in YAML as a bool
    return name


def completed(name: str, timeout_s: float, poll_s: float = 5) -> dict[str, Any]:
    """The Experiment as Katib leaves it once Succeeded or Failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        exp = get("-n", NAMESPACE, "experiment", name)
        for kind in ("Succeeded", "Failed"):
            c = condition(exp, kind)
            if c and c["status"] == "True":
                return exp
        if time.monotonic() > deadline:
            trials = kubectl(
                "-n", NAMESPACE, "get", "trials", "-l", f"katib.kubeflow.org/experiment={name}", check=False
            )
            raise AssertionError(
                f"{name}: not completed within {timeout_s:.0f} s: {exp.get('status', {}).get('conditions')}\n{trials}"
            )
        time.sleep(poll_s)


def run_experiment(raw: dict[str, Any], timeout_s: float, poll_s: float = 5) -> dict[str, Any]:
    """apply_experiment, then the Experiment once it completes."""
    return completed(apply_experiment(raw), timeout_s, poll_s)


ENDED = ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")


def settled(name: str, timeout_s: float = 300, poll_s: float = 3) -> dict[str, Any]:
    """The completed Experiment once each of its trials has ended too: Katib does not stop the trials still
    running when an Experiment ends, and keeps updating the Experiment with them while it lists one as running."""
    deadline = time.monotonic() + timeout_s
    while any(not any((condition(t, k) or {}).get("status") == "True" for k in ENDED) for t in trials_of(name)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: trials still running {timeout_s:.0f} s after it completed")
        time.sleep(poll_s)
    time.sleep(poll_s)  # Katib's last reconcile of the Experiment
    return get("-n", NAMESPACE, "experiment", name)


def trials_of(name: str) -> list[dict[str, Any]]:
    return get("-n", NAMESPACE, "trials", "-l", f"katib.kubeflow.org/experiment={name}")["items"]


def pods_of_trial(trial: str) -> list[dict[str, Any]]:
    return get("-n", NAMESPACE, "pods", "-l", f"katib.kubeflow.org/trial={trial}")["items"]
