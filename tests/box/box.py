"""The Katib box from a test: kubectl through scripts/cluster/kubectl, and the small-budget copy of a shipped
Experiment that the cluster tier applies (the Experiment's own trial template; only the budget changes)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline import lint
from pipeline.katib import budget
from pipeline.workflow import steps

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / "scripts" / "cluster" / "kubectl"
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
    """A copy of `path` for the box: maxTrialCount by the product's budget rule, `--max-rows` and (except where
    the algorithm's resource parameter sets it) `--epochs` appended as the pipeline's budget flags append them,
    the primary container's requests lowered so trials fit the box's 2 CPUs, and `trialTemplate.retain`, so
    Katib keeps each finished trial's Job and pod for the test to read."""
    exp = budget.with_budget(lint.load(path), max_trial_count=max_trials).experiment
    resource_set = "--epochs" in budget.resource_flags(exp)
    exp = steps.append_trial_args(exp, steps.trial_budget_args(rows, 0 if resource_set else epochs))
    raw = exp.raw
    raw["metadata"]["namespace"] = NAMESPACE
    raw["spec"]["trialTemplate"]["retain"] = True
    exp.primary_container().setdefault("resources", {})["requests"] = {"cpu": "100m", "memory": "512Mi"}
    lint.load(raw)  # still an Experiment Katib admits
    return raw


def run_experiment(raw: dict[str, Any], timeout_s: float, poll_s: float = 5) -> dict[str, Any]:
    """kubectl apply, as README says, then the Experiment as Katib leaves it when it completes."""
    name = raw["metadata"]["name"]
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--ignore-not-found", "--wait=true", timeout=300)
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(raw))
    deadline = time.monotonic() + timeout_s
    while True:
        exp = get("-n", NAMESPACE, "experiment", name)
        for kind in ("Succeeded", "Failed"):
            c = condition(exp, kind)
            if c and c["status"] == "True":
                return exp
        if time.monotonic() > deadline:
            trials = kubectl("-n", NAMESPACE, "get", "trials", "-l", f"katib.kubeflow.org/experiment={name}",
                             check=False)
            raise AssertionError(f"{name}: not completed within {timeout_s:.0f} s: "
                                 f"{exp.get('status', {}).get('conditions')}\n{trials}")
        time.sleep(poll_s)


def trials_of(name: str) -> list[dict[str, Any]]:
    return get("-n", NAMESPACE, "trials", "-l", f"katib.kubeflow.org/experiment={name}")["items"]


def pods_of_trial(trial: str) -> list[dict[str, Any]]:
    return get("-n", NAMESPACE, "pods", "-l", f"katib.kubeflow.org/trial={trial}")["items"]
