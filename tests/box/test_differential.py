"""The dry-run against Katib itself, whole Experiments at a time: each Experiment runs once through
`katib-digits tune` and once on Katib (the box), with a deterministic trial, and the two answers must agree on
the end (terminal condition and reason), the counts by state, each trial's end and metrics, and the optimal
trial. Where assignments are random (random search, or a grid cut short), only what does not depend on them is
compared. docs/dryrun.md, "What still differs from Katib, and why", lists what these cannot compare."""

from __future__ import annotations

import time
import warnings
from collections import Counter

import pytest

from tests.box.box import (
    NAMESPACE,
    REPO,
    apply_experiment,
    condition,
    get,
    kubectl,
    run_experiment,
    settled,
    small_budget,
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

METRICS = ["accuracy", "loss"]

# name -> (the Experiment, whether assignments are the same set on both runners, the terminal condition)
CASES = {
    # every grid point (3 x 3), three at a time: the same nine trials, observations and optimal trial
    "grid-all": (
        experiment("diff-grid-all", strategies={"accuracy": "latest", "loss": "min"}, random_state=7),
        True,
        ("Succeeded", "ExperimentMaxTrialsReached"),
    ),
    # the objective under "max": the optimal trial is chosen by each trial's best accuracy, not its last
    "grid-max": (
        experiment("diff-grid-max", epochs=2, strategies={"accuracy": "max", "loss": "latest"}, random_state=11),
        True,
        ("Succeeded", "ExperimentMaxTrialsReached"),
    ),
    # maxTrialCount 2, one trial MetricsUnavailable early: Katib ends on completed trials counting it, but creates
    # trials counting it not, so a third trial starts; it runs on after Succeeded and becomes the optimal trial
    "extra-trial": (
        experiment("diff-extra-trial", mode="mixed", epochs=5, parallel=2, max_trials=2, max_failed=2, random_state=3),
        True,
        ("Succeeded", "ExperimentMaxTrialsReached"),
    ),
    # every point reaches the goal: the first trial ends the Experiment, whichever point it was
    "goal": (
        experiment("diff-goal", x={"min": "0.4", "max": "0.6", "step": "0.1"}, goal=0.8, parallel=1, max_trials=6),
        False,
        ("Succeeded", "ExperimentGoalReached"),
    ),
    # every trial exits 3: Failed once failed trials pass maxFailedTrialCount
    "crash": (
        experiment("diff-crash", mode="crash", parallel=1, max_trials=4, max_failed=1),
        False,
        ("Failed", "ExperimentFailed"),
    ),
    # trials that run and never print the objective: MetricsUnavailable, counted against maxFailedTrialCount
    "silent": (
        experiment("diff-silent", mode="silent", parallel=1, max_trials=4, max_failed=1),
        False,
        ("Failed", "ExperimentFailed"),
    ),
    # a trial past the Job's activeDeadlineSeconds: Failed with the Job's reason
    "deadline": (
        experiment("diff-deadline", mode="sleep", parallel=1, max_trials=2, max_failed=0, deadline_s=8),
        False,
        ("Failed", "ExperimentFailed"),
    ),
    # random search: assignments differ between the runners; the end and the counts do not
    "random": (
        experiment("diff-random", algorithm="random", x={"min": "0.1", "max": "0.9"}, parallel=2, max_trials=4),
        False,
        ("Succeeded", "ExperimentMaxTrialsReached"),
    ),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_dry_run_ends_as_katib_does(case, namespace, tmp_path):
    raw, same_assignments, terminal = CASES[case]
    local_exp, local_rows = dry_run(raw, tmp_path)
    name = raw["metadata"]["name"]
    run_experiment(raw, timeout_s=420)
    katib_exp = settled(name)  # the dry-run, too, waits for trials still running when the Experiment ends

    local, katib = experiment_outcome(local_exp), experiment_outcome(katib_exp)
    assert katib["terminal"] == [terminal], katib  # the case tests what it means to
    ours, theirs = dry_run_trials(local_rows, METRICS), katib_trials(name)
    if same_assignments:
        assert {k: local[k] for k in ("terminal", "counts")} == {k: katib[k] for k in ("terminal", "counts")}
        lost = lost_suggestions(name)
        if lost == 0:
            assert ours == theirs
            assert local == katib  # the optimal trial too
            if raw["spec"]["algorithm"].get("algorithmSettings"):  # seeded: Katib's order too
                assert dry_run_order(local_rows) == katib_order(name)
        else:
            # Katib's controller lost an answer of its suggestion service (differential.lost_suggestions), a race
            # the dry-run does not have (docs/dryrun.md): from there Katib tried other points (a grid: one twice,
            # one never). Each point both runners tried must still agree.
            warnings.warn(f"{name}: Katib's suggestion controller lost {lost} answer(s)", stacklevel=1)
            at = {t["assignments"]: t for t in ours}
            both = [t for t in theirs if t["assignments"] in at]
            assert both == [at[t["assignments"]] for t in both]
    else:
        assert {k: local[k] for k in ("terminal", "counts")} == {k: katib[k] for k in ("terminal", "counts")}
        assert Counter(t["end"] for t in ours) == Counter(t["end"] for t in theirs)
        assert bool(local["optimal"]["metrics"]) == bool(katib["optimal"]["metrics"])


def same_order_unless_katib_lost_an_answer(name: str, rows: list[dict[str, str]], params=("x", "y")) -> bool:
    """Katib asked its suggestion service in the dry-run's order, unless its controller lost an answer
    (differential.lost_suggestions, a race inside Katib): then the points after it are others, and the caller
    compares only what does not depend on them. Whether the order was compared."""
    lost = lost_suggestions(name)
    if lost:
        warnings.warn(f"{name}: Katib's suggestion controller lost {lost} answer(s): order not compared", stacklevel=2)
        return False
    assert dry_run_order(rows, params) == katib_order(name)
    return True


# medianstop on a seeded grid, one trial at a time: the same points in the same order, so the same history and
# the same rule for each trial (from the first two to succeed); the first trial it stops holds the one parallel
# slot for good (pipeline/katib/status.py, early_stop_stall), so both runners stop after it, Running
MEDIANSTOP = experiment(
    "diff-grid-medianstop",
    epochs=4,
    parallel=1,
    max_trials=6,
    random_state=3,
    early_stopping={"min_trials_required": "2", "start_step": "2"},
)


def test_the_dry_run_stalls_where_katib_does_after_an_early_stop(namespace, tmp_path):
    local_exp, local_rows = dry_run(MEDIANSTOP, tmp_path)
    local = experiment_outcome(local_exp)
    running = [c for c in local_exp["status"]["conditions"] if c["type"] == "Running"]
    assert local["terminal"] == [] and "early-stopped trial(s) hold all 1 parallel slot(s)" in running[0]["message"]

    name = apply_experiment(MEDIANSTOP)
    deadline = time.monotonic() + 420
    while not any(t["end"] and t["end"][0] == "EarlyStopped" for t in katib_trials(name)):
        assert time.monotonic() < deadline, f"{name}: no trial early-stopped: {katib_trials(name)}"
        time.sleep(5)
    stopped_at = len(trials_of(name))
    time.sleep(60)  # Katib reconciles at each trial change: a minute with no new trial is a stall
    katib_exp = get("-n", NAMESPACE, "experiment", name)
    katib = experiment_outcome(katib_exp)
    assert len(trials_of(name)) == stopped_at and katib["terminal"] == [], katib
    if same_order_unless_katib_lost_an_answer(name, local_rows):  # else another history: the stall alone
        assert local == katib
        assert dry_run_trials(local_rows, METRICS) == katib_trials(name)
    (stopped,) = [t for t in trials_of(name) if (condition(t, "EarlyStopped") or {}).get("status") == "True"]
    assert "observation" not in stopped["status"], stopped["status"]  # never read: kubeflow/katib#1377
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--wait=false")


def test_our_cnn_trial_ends_as_on_katib_value_for_value(namespace, tmp_path):
    """The shipped grid Experiment with our CNN (small budget, seeded, one at a time) on both runners: the same
    points in the same order, the same conditions and every metric's latest value to 6 digits (the trial is
    seeded, the data the same 300 rows of the embedded sample, the TensorFlow the same pin)."""
    raw = small_budget(REPO / "experiments" / "grid.yaml", 2, rows=300, epochs=1)
    raw["metadata"]["name"] = name = "diff-cnn-grid"
    raw["spec"]["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": "5"}]
    raw["spec"]["parallelTrialCount"] = 1
    objective = raw["spec"]["objective"]
    metrics = [objective["objectiveMetricName"], *objective["additionalMetricNames"]]
    params = tuple(p["name"] for p in raw["spec"]["parameters"])

    local_exp, local_rows = dry_run(raw, tmp_path, "--mount", f"/data={REPO / 'data' / 'sample'}")
    run_experiment(raw, timeout_s=900)
    katib_exp = settled(name)
    assert experiment_outcome(katib_exp)["terminal"] == [("Succeeded", "ExperimentMaxTrialsReached")]
    if same_order_unless_katib_lost_an_answer(name, local_rows, params):  # else other points: the end alone
        assert experiment_outcome(local_exp) == experiment_outcome(katib_exp)
        assert dry_run_trials(local_rows, metrics, params) == katib_trials(name)
