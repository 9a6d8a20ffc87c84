"""The mutating webhook's defaults: Katib's Experiment.SetDefault against our with_defaults,
on every field SetDefault fills."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pipeline.katib.experiment import with_defaults
from tests.oracle.conftest import hypothesis_settings
from tests.oracle.experiments import COLLECTORS, SOURCES, base_experiment, experiments

pytestmark = pytest.mark.process

KINDS = [
    ("batch/v1", "Job"),
    ("kubeflow.org/v1", "TFJob"),
    ("kubeflow.org/v1", "PyTorchJob"),
    ("kubeflow.org/v1", "XGBoostJob"),
    ("kubeflow.org/v1", "MPIJob"),
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    ("example.com/v1", "Widget"),
    ("batch/v2", "Job"),
]


def _view(spec: dict) -> dict:
    """The fields SetDefault fills, as JSON would show them (Go drops empty ones)."""
    tt = spec.get("trialTemplate") or {}
    mc = spec.get("metricsCollectorSpec") or {}
    objective = spec.get("objective") or {}
    return {
        "parallelTrialCount": spec.get("parallelTrialCount"),
        "resumePolicy": spec.get("resumePolicy"),
        "metricStrategies": [(m.get("name", ""), m.get("value", "")) for m in objective.get("metricStrategies") or []],
        "successCondition": tt.get("successCondition") or None,
        "failureCondition": tt.get("failureCondition") or None,
        "primaryPodLabels": tt.get("primaryPodLabels") or None,
        "collector": (mc.get("collector") or {}).get("kind"),
        "fileSystemPath": ((mc.get("source") or {}).get("fileSystemPath") or None),
        "httpGet": ((mc.get("source") or {}).get("httpGet") or None),
        "distributions": [
            ((p or {}).get("feasibleSpace") or {}).get("distribution") for p in spec.get("parameters") or []
        ],
    }


@st.composite
def default_cases(draw):
    exp = draw(experiments())
    spec = exp["spec"]
    tt = spec.get("trialTemplate")
    if tt and tt.get("trialSpec") and draw(st.booleans()):
        tt["trialSpec"]["apiVersion"], tt["trialSpec"]["kind"] = draw(st.sampled_from(KINDS))
        if draw(st.integers(0, 3)) == 0:
            tt["primaryPodLabels"] = {"role": "main"}
    for key in ("parallelTrialCount", "resumePolicy"):
        if draw(st.booleans()):
            spec.pop(key, None)
    return exp


def _check(oracle, exp):
    answer = oracle.ask("defaults", experiment=exp)
    if "decode_error" in answer:
        return
    theirs = _view(answer["experiment"]["spec"])
    ours = _view(with_defaults(exp)["spec"])
    if theirs["httpGet"]:  # Go's IntOrString port: 8080 either way
        theirs["httpGet"] = dict(theirs["httpGet"])
    assert ours == theirs, exp


@hypothesis_settings(600)
@given(default_cases())
def test_generated_experiments_defaulted_as_katib_does(oracle, exp):
    _check(oracle, exp)


@pytest.mark.parametrize("collector", [c for c in COLLECTORS if c] + [None])
@pytest.mark.parametrize("source", SOURCES[1:])
def test_collector_defaults(oracle, collector, source):
    exp = base_experiment()
    mc = {}
    if collector:
        mc["collector"] = dict(collector)
    if source:
        mc["source"] = dict(source)
    exp["spec"]["metricsCollectorSpec"] = mc
    _check(oracle, exp)
