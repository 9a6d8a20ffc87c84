"""The Experiment's status from its trials: Katib's status_util (UpdateExperimentStatus:
currentOptimalTrial, the counts and the end condition) against pipeline.katib.status."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pipeline.katib.collector import Observation, objective_value
from pipeline.katib.experiment import Experiment, with_defaults
from pipeline.katib.status import PENDING, RUNNING, TrialOutcome, end_condition, optimal_trial
from tests.oracle.conftest import hypothesis_settings
from tests.oracle.experiments import base_experiment

pytestmark = pytest.mark.process

STATES = ["Succeeded", "Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable", "Running", "Pending"]
VALUES = ["0.5", "0.9", "0.95", "0.90", "unavailable", "abc", "", "1e3", "-1", "NaN", "0"]


@st.composite
def status_cases(draw):
    exp = base_experiment()
    spec = exp["spec"]
    spec["objective"]["type"] = draw(st.sampled_from(["maximize", "minimize"]))
    goal = draw(st.sampled_from([None, None, 0.9, 0.0, 0.5]))
    if goal is not None:
        spec["objective"]["goal"] = goal
    if draw(st.booleans()):
        spec["objective"]["metricStrategies"] = [
            {"name": "accuracy", "value": draw(st.sampled_from(["min", "max", "latest"]))}
        ]
    for key, choices in (("maxTrialCount", [None, 1, 3, 5, 8]), ("maxFailedTrialCount", [None, 0, 1, 2, 3])):
        value = draw(st.sampled_from(choices))
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    trials = []
    for i in range(draw(st.integers(0, 8))):
        metrics = None
        if draw(st.integers(0, 4)):
            metrics = [
                {
                    "name": "accuracy",
                    "min": draw(st.sampled_from(VALUES)),
                    "max": draw(st.sampled_from(VALUES)),
                    "latest": draw(st.sampled_from(VALUES)),
                }
            ]
            if draw(st.integers(0, 5)) == 0:
                metrics = [{"name": "loss", "min": "1", "max": "2", "latest": "1"}]
        trials.append(
            {
                "name": f"digits-t{i}",
                "state": draw(st.sampled_from(STATES)),
                "metrics": metrics,
                "assignments": [{"name": "lr", "value": str(i)}],
            }
        )
    return exp, trials, draw(st.sampled_from([None, False, True]))


def _ours(exp: dict, trials: list[dict], suggestion_done: bool | None):
    e = Experiment(with_defaults(exp))
    objective = e.objective
    outcomes = []
    for t in trials:
        obs = None
        value = "unavailable"
        if t["metrics"] is not None:
            obs = t["metrics"]
            o = Observation({m["name"]: {k: m[k] for k in ("min", "max", "latest")} for m in obs})
            value = objective_value(o, objective.metric, objective.strategy())
        outcomes.append(
            TrialOutcome(t["name"], t["state"], value, obs, {a["name"]: a["value"] for a in t["assignments"]})
        )
    best, _ = optimal_trial(outcomes, objective)
    active = any(t.state in (RUNNING, PENDING) for t in outcomes)
    end = end_condition(
        outcomes, objective, e.max_trial_count, e.max_failed_trial_count, bool(suggestion_done) and not active
    )
    return (best.name if best else ""), (end[1] if end else "ExperimentRunning")


def _theirs(answer: dict):
    best = (answer["current_optimal_trial"] or {}).get("bestTrialName", "")
    last = answer["conditions"][-1]
    return best, last["reason"]


def _check(oracle, exp, trials, suggestion_done):
    fields = {"experiment": exp, "trials": trials}
    if suggestion_done is not None:
        fields["suggestion_done"] = suggestion_done
    answer = oracle.ask("status", **fields)
    assert "panic" not in answer, answer
    assert _ours(exp, trials, suggestion_done) == _theirs(answer), (trials, exp["spec"], answer["conditions"])


@hypothesis_settings(600)
@given(status_cases())
def test_generated_trial_lists_judged_as_katib_does(oracle, case):
    _check(oracle, *case)


def test_non_numeric_objective_keeps_go_zero_as_best_value(oracle):
    """A trial whose objective is not a number becomes the best, and Katib's best VALUE stays 0."""
    exp = base_experiment()
    exp["spec"]["objective"]["type"] = "minimize"
    exp["spec"]["objective"]["goal"] = 0.1
    trials = [
        {
            "name": "a",
            "state": "Succeeded",
            "metrics": [{"name": "accuracy", "min": "abc", "max": "abc", "latest": "abc"}],
            "assignments": [],
        },
        {
            "name": "b",
            "state": "Succeeded",
            "metrics": [{"name": "accuracy", "min": "0.5", "max": "0.5", "latest": "0.5"}],
            "assignments": [],
        },
    ]
    _check(oracle, exp, trials, None)
    assert _ours(exp, trials, None) == ("a", "ExperimentGoalReached")
