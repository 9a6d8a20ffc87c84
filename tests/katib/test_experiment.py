"""pipeline.katib.experiment: loading one Experiment and Katib's webhook defaults."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.katib.experiment import (
    JOB_FAILURE_CONDITION,
    JOB_SUCCESS_CONDITION,
    KUBEFLOW_JOB_SUCCESS_CONDITION,
    Experiment,
    load_experiment,
    parse_experiment,
    with_defaults,
)
from tests.conftest import REPO

MINIMAL = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: x}
spec:
  objective: {type: maximize, objectiveMetricName: val_accuracy, additionalMetricNames: [loss]}
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.1", max: "0.2"}}
    - {name: opt, parameterType: categorical, feasibleSpace: {list: [a, b]}}
    - {name: "n", parameterType: int}  # quoted: a plain n is a boolean to kubectl
  trialTemplate:
    primaryContainerName: main
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec: {template: {spec: {containers: [{name: main, image: i}]}}}
"""


def test_defaults_fill_what_katib_fills():
    exp = with_defaults(parse_experiment(MINIMAL))
    spec = exp["spec"]
    assert spec["parallelTrialCount"] == 3
    assert spec["resumePolicy"] == "Never"
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["objective"]["metricStrategies"] == [
        {"name": "val_accuracy", "value": "max"},
        {"name": "loss", "value": "max"},
    ]
    # Katib gives every parameter a distribution, categorical ones and missing feasibleSpaces too.
    assert [p["feasibleSpace"]["distribution"] for p in spec["parameters"]] == ["uniform"] * 3
    assert spec["trialTemplate"]["successCondition"] == JOB_SUCCESS_CONDITION
    assert spec["trialTemplate"]["failureCondition"] == JOB_FAILURE_CONDITION


def test_defaults_do_not_touch_the_input_or_explicit_values():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["parallelTrialCount"] = 1
    exp["spec"]["objective"]["metricStrategies"] = [{"name": "loss", "value": "latest"}]
    out = with_defaults(exp)
    assert "resumePolicy" not in exp["spec"]
    assert out["spec"]["parallelTrialCount"] == 1
    assert out["spec"]["objective"]["metricStrategies"] == [
        {"name": "loss", "value": "latest"},
        {"name": "val_accuracy", "value": "max"},
    ]


def test_unknown_objective_type_gets_latest():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["objective"]["type"] = "best"
    assert {s["value"] for s in with_defaults(exp)["spec"]["objective"]["metricStrategies"]} == {"latest"}


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("File", {"path": "/var/log/katib/metrics.log", "kind": "File", "format": "TEXT"}),
        ("TensorFlowEvent", {"path": "/var/log/katib/tfevent/", "kind": "Directory"}),
    ],
)
def test_collector_defaults(kind, expected):
    exp = parse_experiment(MINIMAL)
    exp["spec"]["metricsCollectorSpec"] = {"collector": {"kind": kind}}
    fs = with_defaults(exp)["spec"]["metricsCollectorSpec"]["source"]["fileSystemPath"]
    assert fs == expected


def test_prometheus_defaults():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "PrometheusMetric"}}
    assert with_defaults(exp)["spec"]["metricsCollectorSpec"]["source"]["httpGet"] == {"path": "/metrics", "port": 8080}


def test_kubeflow_job_defaults_conditions_and_primary_pod_labels():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["trialTemplate"]["trialSpec"] = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "spec": {}}
    template = with_defaults(exp)["spec"]["trialTemplate"]
    assert template["successCondition"] == KUBEFLOW_JOB_SUCCESS_CONDITION
    assert template["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}


def test_unknown_trial_kind_gets_no_conditions():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["trialTemplate"]["trialSpec"]["kind"] = "Widget"
    assert "successCondition" not in with_defaults(exp)["spec"]["trialTemplate"]


def test_malformed_spec_does_not_crash_defaults():
    exp = parse_experiment(MINIMAL)
    exp["spec"]["objective"] = "max"
    exp["spec"]["parameters"] = ["lr"]
    exp["spec"]["metricsCollectorSpec"] = {"collector": "StdOut"}
    assert with_defaults(exp)["spec"]["resumePolicy"] == "Never"


def test_primary_container():
    exp = Experiment(parse_experiment(MINIMAL))
    assert exp.primary_container()["image"] == "i"
    exp.raw["spec"]["trialTemplate"]["primaryContainerName"] = "other"
    with pytest.raises(UserError, match="primaryContainerName"):
        exp.primary_container()


def test_typed_view_reads_the_defaulted_spec():
    exp = Experiment(
        parse_experiment(MINIMAL.replace("objectiveMetricName", "goal: 0.99, objectiveMetricName")), "m.yaml"
    )
    assert (exp.name, exp.namespace, exp.parallel_trial_count, exp.max_trial_count) == ("x", None, 3, None)
    obj = exp.objective
    assert obj.maximize and obj.goal == 0.99 and obj.metric_names == ["val_accuracy", "loss"]
    assert obj.strategy() == "max" and obj.strategy("loss") == "max"  # Katib's default follows the type
    assert obj.reached(0.99) and not obj.reached(0.98) and obj.better(0.5, 0.4)
    with pytest.raises(UserError, match=r"spec.parameters\[2\].feasibleSpace: both min and max"):
        _ = exp.parameters
    assert exp.collector_kind == "StdOut" and exp.source == "m.yaml"
    exp.raw["spec"]["parameters"].pop()
    lr, opt = exp.parameters
    assert (lr.type, lr.min, lr.max, lr.distribution) == ("double", 0.1, 0.2, "uniform")
    assert (opt.type, opt.choices) == ("categorical", ("a", "b"))


def test_with_spec_changes_a_copy():
    exp = Experiment(parse_experiment(MINIMAL))
    smaller = exp.with_spec(maxTrialCount=2, parallelTrialCount=None)
    assert smaller.max_trial_count == 2 and "maxTrialCount" not in exp.spec
    assert smaller.parallel_trial_count == 3  # removed, then defaulted again as Katib would


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: [", "not valid YAML"),
        ("", "empty file"),
        ("- 1\n", "expected a mapping"),
        (MINIMAL + "\n---\n" + MINIMAL, "2 YAML documents"),
        (MINIMAL.replace("kind: Experiment", "kind: Trial"), "kind: expected 'Experiment'"),
        (MINIMAL.replace("v1beta1", "v1alpha3"), "apiVersion"),
        ("apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata: {name: x}\n", "spec: required"),
    ],
)
def test_parse_rejects_bad_documents(text, message):
    with pytest.raises(UserError, match=message):
        parse_experiment(text, source="f.yaml")


def test_load_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_experiment(tmp_path)


def test_load_shipped_experiment():
    assert load_experiment(REPO / "experiments" / "random.yaml")["metadata"]["name"] == "digits-random"


@pytest.mark.parametrize("scalar", ["y", "N"])
def test_an_unquoted_yaml11_boolean_is_refused_with_where_to_quote(scalar):
    """PyYAML reads a plain `y` as a string, Kubernetes (YAML 1.1) as a boolean: kubectl refused our
    parameter named y on the box. Quoted, it means the same to both and is accepted."""
    text = "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata: {name: a}\nspec:\n  parameters:\n"
    with pytest.raises(UserError, match=rf'f.yaml: line 6, column 13: an unquoted {scalar} is a boolean .*"{scalar}"'):
        parse_experiment(text + f"    - name: {scalar}\n", source="f.yaml")
    assert (
        parse_experiment(text + f'    - name: "{scalar}"\n', source="f.yaml")["spec"]["parameters"][0]["name"] == scalar
    )


def test_dump_yaml_quotes_what_kubernetes_would_read_as_a_boolean():
    from pipeline.katib.experiment import dump_yaml

    assert (
        dump_yaml({"name": "y", "other": "yes", "n": 1}, sort_keys=True) == '"n": 1\nname: "y"\nother: \'yes\'\n'
    )  # keys too
