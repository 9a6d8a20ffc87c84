"""Every shipped Experiment on Katib's own controllers (the box), with a small budget: applied with kubectl,
its trials created by Katib's controller from the Experiment's own trial template, its metrics collected by
Katib's StdOut sidecar from our trial, until Katib marks it Succeeded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.box.box import (
    COLLECTOR,
    NAMESPACE,
    REPO,
    condition,
    kubectl,
    pods_of_trial,
    run_experiment,
    small_budget,
    trials_of,
)

pytestmark = pytest.mark.cluster

# maxTrialCount per Experiment: 3 where the algorithm allows; hyperband's one bracket (9 at r_l/eta = 1 epoch, then
# 1 at 9); asha needs a full rung of eta = 3 to promote; medianstop needs min_trials_required = 3 finished first.
BUDGETS = {"hyperband": 10, "asha": 6, "asha-full": 6, "random-medianstop": 5}
LOWEST_RUNG = {"asha": 1, "asha-full": 3}  # min_resource: a trial with more epochs is a promotion
EPOCHS = {"random-medianstop": 4}  # past medianstop's start_step 3, so its rule can stop a trial
OUT = REPO / "runs" / "box"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_katib_runs_the_experiment_to_succeeded(namespace, path: Path):
    raw = small_budget(path, BUDGETS.get(path.stem, 3), epochs=EPOCHS.get(path.stem, 1))
    name = raw["metadata"]["name"]
    if path.stem in LOWEST_RUNG:
        _clear_checkpoints(raw)
    exp = run_experiment(raw, timeout_s=1500)
    trials = trials_of(name)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{path.stem}.json").write_text(json.dumps({"experiment": exp, "trials": trials}, indent=1))

    succeeded = condition(exp, "Succeeded")
    assert succeeded and succeeded["status"] == "True", exp["status"].get("conditions")
    assert succeeded["reason"] in ("ExperimentMaxTrialsReached", "ExperimentGoalReached"), succeeded
    status = exp["status"]
    assert status.get("trialsSucceeded", 0) >= 1, status
    assert status.get("trialsFailed", 0) == 0 and status.get("trialsMetricsUnavailable", 0) == 0, status

    metric_names = [raw["spec"]["objective"]["objectiveMetricName"], *raw["spec"]["objective"]["additionalMetricNames"]]
    optimal = {m["name"]: m for m in status["currentOptimalTrial"]["observation"]["metrics"]}
    assert 0 < float(optimal["val_accuracy"]["latest"]) <= 1, optimal
    for trial in trials:
        if (condition(trial, "Succeeded") or {}).get("status") != "True":
            continue
        collected = {m["name"]: m for m in trial["status"]["observation"]["metrics"]}
        assert set(metric_names) <= set(collected), (trial["metadata"]["name"], collected)
        for metric in metric_names:
            float(collected[metric]["latest"])  # a number Katib parsed from our trial's stdout
        (pod,) = pods_of_trial(trial["metadata"]["name"])
        assert COLLECTOR in [c["name"] for c in pod["spec"]["containers"]], "Katib's webhook injected no collector"

    if path.stem == "hyperband":
        _each_trial_trains_its_rungs_epochs(trials)
    if path.stem in LOWEST_RUNG:
        _a_promotion_resumed_from_its_checkpoint(trials, LOWEST_RUNG[path.stem])
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--wait=true", timeout=300)


def _clear_checkpoints(raw: dict) -> None:
    """An earlier run's checkpoints on the claim would answer this run's promotions with no training."""
    pod = raw["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/checkpoints"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "clear-asha-checkpoints"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": pod["securityContext"],
                    "volumes": [volume],
                    "containers": [
                        {
                            "name": "clear",
                            "image": pod["containers"][0]["image"],
                            "volumeMounts": [mount],
                            "command": ["rm", "-rf", f"/checkpoints/{raw['metadata']['name']}"],
                        }
                    ],
                }
            },
        },
    }
    kubectl("-n", NAMESPACE, "delete", "job", "clear-asha-checkpoints", "--ignore-not-found", "--wait=true")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=json.dumps(job))
    kubectl(
        "-n", NAMESPACE, "wait", "--for=condition=Complete", "job/clear-asha-checkpoints", "--timeout=120s", timeout=150
    )


def _epochs_flag(pod: dict) -> int:
    words = pod["spec"]["containers"][0]["command"] + pod["spec"]["containers"][0].get("args", [])
    values = [int(m.group(1)) for w in words for m in re.finditer(r"--epochs=(\d+)", w)]
    return values[-1]  # argparse keeps the last


def _each_trial_trains_its_rungs_epochs(trials: list[dict]) -> None:
    """The budget never overrides hyperband's resource parameter: each trial trains the epochs Katib assigned."""
    rungs = set()
    for trial in trials:
        assigned = {a["name"]: a["value"] for a in trial["spec"]["parameterAssignments"]}
        (pod,) = pods_of_trial(trial["metadata"]["name"])
        assert _epochs_flag(pod) == int(assigned["epochs"]), trial["metadata"]["name"]
        rungs.add(int(assigned["epochs"]))
    assert rungs == {1, 9}, rungs


def _a_promotion_resumed_from_its_checkpoint(trials: list[dict], lowest_rung: int) -> None:
    promoted = [
        t
        for t in trials
        if int({a["name"]: a["value"] for a in t["spec"]["parameterAssignments"]}["epochs"]) > lowest_rung
    ]
    assert promoted, "asha promoted no trial"
    # the StdOut collector sends the trial's output to a file its sidecar reads and logs
    logs = [
        kubectl("-n", NAMESPACE, "logs", pods_of_trial(t["metadata"]["name"])[0]["metadata"]["name"], "-c", COLLECTOR)
        for t in promoted
    ]
    assert any("trial: resumed from" in log for log in logs), logs[0][-2000:]
