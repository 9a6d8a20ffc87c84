"""Katib's faults on the box, with nothing lost: the controller deleted mid-Experiment, the database restarted
mid-Experiment, a trial's pod killed (and the same fault in the dry-run, counted the same way). The trial is
tests/box/differential.py's deterministic one, slowed down so there is something running to disturb."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from tests.box.box import (
    NAMESPACE,
    REPO,
    apply_experiment,
    completed,
    condition,
    get,
    kubectl,
    pods_of_trial,
    trials_of,
)
from tests.box.differential import (
    dry_run,
    dry_run_order,
    dry_run_trials,
    experiment,
    experiment_outcome,
    katib_order,
    katib_trials,
    lost_suggestions,
)

pytestmark = pytest.mark.cluster

KATIB = "kubeflow"
SUCCEEDED = "TrialSucceeded. Job reason: CompletionsReached"  # Katib adds the Job's reason (Kubernetes 1.31+)


def wait_for(what: str, check, timeout_s: float = 240, poll_s: float = 2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def katib_pod(component: str) -> dict:
    pods = get("-n", KATIB, "pods", "-l", f"katib.kubeflow.org/component={component}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def restart(component: str) -> None:
    """Delete Katib's `component` pod; its Deployment makes a new one, which must become ready."""
    old = katib_pod(component)["metadata"]["uid"]
    kubectl("-n", KATIB, "delete", "pod", "-l", f"katib.kubeflow.org/component={component}", "--wait=true")

    def ready():
        pods = get("-n", KATIB, "pods", "-l", f"katib.kubeflow.org/component={component}")["items"]
        return [
            p
            for p in pods
            if p["metadata"]["uid"] != old
            and p["metadata"].get("deletionTimestamp") is None
            and (condition(p, "Ready") or {}).get("status") == "True"
        ]

    try:
        wait_for(f"a new {component} pod is ready", ready, timeout_s=420)
    except AssertionError as exc:  # say what the pods are doing
        pods = kubectl("-n", KATIB, "get", "pods", "-o", "wide", check=False)
        events = kubectl("-n", KATIB, "get", "events", "--sort-by=.lastTimestamp", check=False)
        raise AssertionError(f"{exc}\n{pods}\n{events[-3000:]}") from None


def running_trials(name: str) -> list[dict]:
    return [t for t in trials_of(name) if (condition(t, "Running") or {}).get("status") == "True"]


def succeeded(name: str) -> list[str]:
    return [t["metadata"]["name"] for t in trials_of(name) if (condition(t, "Succeeded") or {}).get("status") == "True"]


def assert_each_suggestion_ran_once(name: str, points: int, whole_log: bool = True) -> None:
    """No trial lost or created twice: each of Katib's suggestions (the Suggestion's list, by trial name) is one
    Trial, and each Trial one suggestion; each point once, unless Katib's controller lost an answer of the grid
    service (a race of its own, differential.lost_suggestions, read from the controller's log; `whole_log`
    False: the controller was replaced, its old pod's log is gone, and a controller killed between asking and
    recording loses that answer too); every trial Succeeded."""
    suggested = [s["name"] for s in get("-n", NAMESPACE, "suggestion", name)["status"].get("suggestions") or []]
    made = [t["metadata"]["name"] for t in trials_of(name)]
    assert len(suggested) == points and sorted(made) == sorted(suggested), (suggested, made)
    trials = katib_trials(name)
    if len({t["assignments"] for t in trials}) != points:
        if whole_log:
            assert lost_suggestions(name) > 0, [t["assignments"] for t in trials]
        else:
            warnings.warn(f"{name}: a grid point tried twice, an answer lost across the restart", stacklevel=2)
    assert all(t["end"] == ("Succeeded", SUCCEEDED) for t in trials), trials


def controller_pods() -> list[dict]:
    pods = get("-n", KATIB, "pods", "-l", "katib.kubeflow.org/component=controller")["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def refused_by_katibs_own_webhook() -> bool:
    """Whether the controller's ReplicaSet was refused a pod by Katib's pod webhook, which that pod serves."""
    events = get("-n", KATIB, "events", "--field-selector", "reason=FailedCreate")["items"]
    return any("mutator.pod.katib.kubeflow.org" in e.get("message", "") for e in events)


def test_the_controller_deleted_mid_experiment_loses_and_repeats_no_trial(namespace):
    name = apply_experiment(experiment("fault-controller", pause_s=3))
    wait_for("two trials running", lambda: len(running_trials(name)) >= 2)
    old = [p["metadata"]["uid"] for p in controller_pods()]
    kubectl("-n", KATIB, "delete", "events", "--field-selector", "reason=FailedCreate", check=False)
    kubectl("-n", KATIB, "delete", "pod", "-l", "katib.kubeflow.org/component=controller", "--wait=false")

    def replaced():
        return [p for p in controller_pods() if p["metadata"]["uid"] not in old]

    # Katib's standalone install labels `kubeflow` for injection and its pod webhook (failurePolicy Fail) is served
    # by the controller itself: once the old pod stops serving, the new pod is refused (kubeflow/katib#1261).
    # Either the replacement got in while the old pod still served, or the way out docs/cluster.md gives is
    # needed: the label off `kubeflow` until the new controller pod exists.
    outcome = wait_for(
        "a new controller pod, or its ReplicaSet refused by Katib's webhook",
        lambda: ("replaced" if replaced() else None) or ("refused" if refused_by_katibs_own_webhook() else None),
        timeout_s=180,
    )
    if outcome == "refused":
        warnings.warn("Katib's webhook refused the new controller pod: the label taken off kubeflow", stacklevel=1)
        kubectl("label", "namespace", KATIB, "katib.kubeflow.org/metrics-collector-injection-")
        try:
            wait_for("a new controller pod once the label is off", replaced)
        finally:
            kubectl("label", "namespace", KATIB, "katib.kubeflow.org/metrics-collector-injection=enabled")
    kubectl("-n", KATIB, "rollout", "status", "deploy/katib-controller", "--timeout=300s", timeout=330)
    exp = completed(name, 600)
    assert experiment_outcome(exp)["terminal"] == [("Succeeded", "ExperimentMaxTrialsReached")]
    assert_each_suggestion_ran_once(name, 9, whole_log=False)


def observation_rows(trials: list[str]) -> list[tuple[str, str, str]]:
    """What Katib's database holds for `trials` (the db-manager's observation_logs table), read with psql."""
    pod = katib_pod("postgres")["metadata"]["name"]
    names = ",".join(f"'{t}'" for t in trials)
    out = kubectl(
        "-n",
        KATIB,
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -F "|" '
        f'-c "SELECT trial_name, metric_name, value FROM observation_logs WHERE trial_name IN ({names}) '
        'ORDER BY trial_name, time, metric_name, value"',
    )
    return [(row[0], row[1], row[2]) for row in (line.split("|") for line in out.splitlines() if line)]


def test_the_database_restarted_mid_experiment_keeps_every_observation(namespace):
    name = apply_experiment(experiment("fault-database", pause_s=2))
    finished = wait_for("two trials succeeded", lambda: succeeded(name) if len(succeeded(name)) >= 2 else None)
    before = observation_rows(finished)
    assert len(before) == len(finished) * 3 * 2, before  # three epochs, two metrics each
    restart("postgres")
    exp = completed(name, 600)
    assert experiment_outcome(exp)["terminal"] == [("Succeeded", "ExperimentMaxTrialsReached")]
    assert_each_suggestion_ran_once(name, 9)
    assert observation_rows(finished) == before


def test_a_killed_trial_pod_is_counted_as_the_dry_run_counts_a_killed_trial(namespace, tmp_path):
    raw = experiment(
        "fault-trial-kill",
        algorithm="random",
        mode="kill-me",
        epochs=20,
        pause_s=1,
        parallel=1,
        max_trials=1,
        max_failed=1,
    )
    # Katib: the trial's pod deleted while it trains
    name = apply_experiment(raw)
    trial = wait_for("the trial running", lambda: running_trials(name))[0]["metadata"]["name"]
    pod = wait_for(
        "the trial's pod", lambda: [p for p in pods_of_trial(trial) if p["status"].get("phase") == "Running"]
    )
    time.sleep(3)
    kubectl("-n", NAMESPACE, "delete", "pod", pod[0]["metadata"]["name"], "--wait=false")
    katib = experiment_outcome(completed(name, 600))
    theirs = katib_trials(name)

    # the dry-run: the trial's process killed (SIGTERM, as the kubelet sends) while it trains
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(raw))  # JSON: an unquoted y in YAML is refused (a boolean to kubectl)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "tune",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--no-report",
            "--no-progress",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def trial_pid():  # the trial's python (the dry-run runs a leading python3 as its own interpreter; `kill-me` is
        # its MODE), not a shell above it
        pattern = "^[^ ]*python[0-9.]* -c .*kill-me"
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
        return [int(p) for p in found.split()]

    pids = wait_for("the dry-run's trial process", trial_pid, 60, 0.5)
    time.sleep(3)
    os.kill(pids[0], signal.SIGTERM)
    _out, err = run.communicate(timeout=120)
    assert run.returncode in (0, 1), err[-2000:]
    local = experiment_outcome(json.loads((tmp_path / "run" / "experiment.json").read_text()))
    with open(tmp_path / "run" / "trials.csv", newline="") as f:
        ours = dry_run_trials(list(csv.DictReader(f)), ["accuracy", "loss"])

    assert {k: local[k] for k in ("terminal", "counts")} == {k: katib[k] for k in ("terminal", "counts")}
    assert [t["end"] for t in ours] == [t["end"] for t in theirs]
    assert [t["latest"].keys() for t in ours] == [t["latest"].keys() for t in theirs]


def asha_experiment(name: str) -> dict:
    """ASHA (our suggestion service) over the deterministic trial, which trains the epochs ASHA assigns; one trial at
    a time, so each request to the service carries the same history on every run."""
    raw = experiment(name, algorithm="asha", epochs="${trialParameters.epochs}", parallel=1, max_trials=5)
    settings = {"resource_name": "epochs", "eta": "3", "min_resource": "1", "max_resource": "9", "random_state": "5"}
    raw["spec"]["algorithm"]["algorithmSettings"] = [{"name": k, "value": v} for k, v in settings.items()]
    raw["spec"]["parameters"][0]["feasibleSpace"] = {"min": "0.1", "max": "0.9"}
    raw["spec"]["parameters"].append(
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}}
    )
    raw["spec"]["trialTemplate"]["trialParameters"].append({"name": "epochs", "reference": "epochs"})
    return raw


def test_the_asha_service_deleted_mid_experiment_answers_as_an_undisturbed_run(namespace, tmp_path):
    calm = experiment_outcome(completed(apply_experiment(asha_experiment("fault-asha-calm")), 600))
    calm_points = katib_order("fault-asha-calm")
    # the dry-run runs the same service in-process: the same answers in the same order
    _local, rows = dry_run(asha_experiment("fault-asha-calm"), tmp_path)
    assert dry_run_order(rows, ("epochs", "x", "y")) == calm_points

    name = apply_experiment(asha_experiment("fault-asha-kicked"))
    wait_for("the service has answered twice", lambda: len(katib_order(name)) >= 2, timeout_s=300)
    deployment = f"{name}-asha"  # Katib's GetSuggestionDeploymentName
    before = get("-n", NAMESPACE, "pods", "-l", f"katib.kubeflow.org/deployment={deployment}")["items"]
    assert len(before) == 1, [p["metadata"]["name"] for p in before]
    kubectl("-n", NAMESPACE, "delete", "pod", before[0]["metadata"]["name"], "--wait=true")
    answered = len(katib_order(name))
    wait_for(
        "a new service pod ready",
        lambda: [
            p
            for p in get("-n", NAMESPACE, "pods", "-l", f"katib.kubeflow.org/deployment={deployment}")["items"]
            if p["metadata"]["uid"] != before[0]["metadata"]["uid"]
            and (condition(p, "Ready") or {}).get("status") == "True"
        ],
        timeout_s=300,
    )
    kicked = experiment_outcome(completed(name, 600))

    # the new pod answered the rest and, holding no state, answered what the old one would have
    assert answered < len(katib_order(name)), "the Experiment needed nothing more from the new service pod"
    assert calm["terminal"] == [("Succeeded", "ExperimentMaxTrialsReached")]
    assert katib_order(name) == calm_points
    assert kicked == calm
