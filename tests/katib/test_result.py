"""pipeline.katib.result: reading Katib-shaped results (kubectl get -o json, our dry-run, a bare optimal trial)."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import UserError
from pipeline.katib.result import OptimalTrial, load_result, objective_spec, objective_value, parse_result, reaches

OPTIMAL = {
    "bestTrialName": "digits-tpe-abcdefgh",
    "parameterAssignments": [{"name": "lr", "value": "0.001"}, {"name": "optimizer", "value": "adam"}],
    "observation": {
        "metrics": [
            {"name": "val_accuracy", "min": "0.91", "max": "0.975", "latest": "0.97"},
            {"name": "val_loss", "min": "0.08", "max": "0.3", "latest": "0.09"},
        ]
    },
}


def experiment(objective_type="maximize", metric="val_accuracy", strategies=None, optimal=OPTIMAL):
    objective = {"type": objective_type, "objectiveMetricName": metric}
    if strategies is not None:
        objective["metricStrategies"] = strategies
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "digits-tpe"},
        "spec": {"objective": objective},
        "status": {"currentOptimalTrial": optimal},
    }


def write(tmp_path, obj, name="experiment.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_experiment_object_gives_assignments_as_strings_in_order(tmp_path):
    result = load_result(write(tmp_path, experiment()))
    assert result.experiment is not None and result.experiment["metadata"]["name"] == "digits-tpe"
    assert result.optimal.name == "digits-tpe-abcdefgh"
    assert list(result.optimal.assignments.items()) == [("lr", "0.001"), ("optimizer", "adam")]


def test_bare_optimal_trial_has_no_experiment(tmp_path):
    result = load_result(write(tmp_path, OPTIMAL))
    assert result.experiment is None
    assert result.optimal.assignments["optimizer"] == "adam"


def test_to_katib_round_trips():
    optimal = parse_result(OPTIMAL).optimal
    assert parse_result(optimal.to_katib()).optimal == optimal


@pytest.mark.parametrize(
    "objective_type, metric, strategies, expected",
    [
        ("maximize", "val_accuracy", None, 0.975),  # webhook default: max
        ("minimize", "val_loss", None, 0.08),  # webhook default: min
        ("maximize", "val_accuracy", [{"name": "val_accuracy", "value": "latest"}], 0.97),
        ("minimize", "val_loss", [{"name": "val_accuracy", "value": "latest"}], 0.08),  # another metric's strategy
    ],
)
def test_objective_value_follows_the_metric_strategy(objective_type, metric, strategies, expected):
    result = parse_result(experiment(objective_type, metric, strategies))
    assert objective_value(result) == pytest.approx(expected)
    assert result.experiment is not None and objective_spec(result.experiment)[1] == objective_type


def test_bare_trial_objective_needs_the_experiment():
    result = parse_result(OPTIMAL, source="best.json")
    with pytest.raises(UserError, match="best.json: .*pass the Experiment YAML"):
        objective_value(result)
    assert objective_value(result, experiment()) == pytest.approx(0.975)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"x.json: not valid JSON \(line 1, column 2\)"),
        ("[1, 2]", "x.json: expected a JSON object"),
        (json.dumps({"hello": 1}), "x.json: neither a Katib Experiment"),
        (json.dumps({"kind": "Experiment", "spec": {}}), "x.json: status: missing"),
        (
            json.dumps({"kind": "Experiment", "spec": {}, "status": {"conditions": []}}),
            r"x.json: status.currentOptimalTrial: missing",
        ),
        (
            json.dumps(experiment(optimal={"bestTrialName": "", "parameterAssignments": None})),
            r"x.json: status.currentOptimalTrial.parameterAssignments: empty; no trial has succeeded",
        ),
        (
            json.dumps({"bestTrialName": "t", "parameterAssignments": [{"value": "1"}]}),
            r"x.json: currentOptimalTrial.parameterAssignments\[0\]: expected \{name: string, value: string\}",
        ),
        (
            json.dumps({"bestTrialName": "t", "parameterAssignments": [{"name": "a", "value": "1"}] * 2}),
            r"x.json: currentOptimalTrial.parameterAssignments\[1\].name: 'a' is assigned twice",
        ),
        (json.dumps({"kind": "Experiment", "status": {}}), "x.json: spec: required mapping is missing"),
    ],
)
def test_bad_results_name_the_file_and_field(tmp_path, content, message):
    with pytest.raises(UserError, match=message):
        load_result(write(tmp_path, content, "x.json"))


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.json: file not found"):
        load_result(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "metrics, message",
    [
        (
            [{"name": "val_loss", "min": "0.1"}],
            r"no metric named 'val_accuracy' \(the objective\); found \['val_loss'\]",
        ),
        (
            [{"name": "val_accuracy", "max": "unavailable"}],
            r"metrics\[val_accuracy\].max: 'unavailable' is not a number",
        ),
    ],
)
def test_unusable_objective_observation(metrics, message):
    optimal = {**OPTIMAL, "observation": {"metrics": metrics}}
    with pytest.raises(UserError, match=message):
        objective_value(parse_result(experiment(optimal=optimal)))


@pytest.mark.parametrize(
    "value, threshold, kind, expected",
    [
        (0.98, None, "maximize", True),
        (0.98, 0.98, "maximize", True),  # inclusive, like Katib's objective goal
        (0.97, 0.98, "maximize", False),
        (0.05, 0.05, "minimize", True),
        (0.06, 0.05, "minimize", False),
    ],
)
def test_reaches(value, threshold, kind, expected):
    assert reaches(value, threshold, kind) is expected


def test_reaches_rejects_unknown_type():
    with pytest.raises(ValueError, match="'max'"):
        reaches(1.0, 0.5, "max")


def test_optimal_trial_is_a_value():
    assert OptimalTrial("a", {"x": "1"}) == OptimalTrial("a", {"x": "1"}, {})
