"""Hypothesis strategies for Katib Experiments: a valid base, then mutations of every
field the webhook, the defaults and the manifest generator look at."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

NAMES = ["digits", "a", "digits-1", "1digits", "Digits", "digits-", "x" * 40, "x" * 41, "digits_x", "d.x", ""]
COUNTS = [None, None, -1, 0, 1, 2, 3, 5, 10]
OBJECTIVE_TYPES = ["maximize", "maximize", "minimize", "", "max"]
ALGORITHMS = ["random", "random", "tpe", "multivariate-tpe", "sobol", "", "simulated-annealing"]
EARLY = [None, None, "medianstop", "", "nope"]
RESUME = [None, "Never", "LongRunning", "FromVolume", "Sometimes"]
PTYPES = ["double", "double", "int", "categorical", "discrete", "", "float"]
DISTRIBUTIONS = [None, None, "uniform", "logUniform", "normal", "bogus"]
COLLECTORS = [
    None,
    None,
    {"kind": "StdOut"},
    {"kind": "File"},
    {"kind": "Push"},
    {"kind": "TensorFlowEvent"},
    {"kind": "PrometheusMetric"},
    {"kind": "Custom"},
    {"kind": "Bogus"},
]
SOURCES = [
    None,
    None,
    {"fileSystemPath": {"path": "/var/log/m.log", "kind": "File"}},
    {"fileSystemPath": {"path": "m.log", "kind": "File"}},
    {"fileSystemPath": {"path": "/var/log/m.log", "kind": "File", "format": "JSON"}},
    {
        "fileSystemPath": {"path": "/var/log/m.log", "kind": "File", "format": "JSON"},
        "filter": {"metricsFormat": [r"(\w+)=(\d+)"]},
    },
    {"fileSystemPath": {"path": "/var/log/tf", "kind": "Directory"}},
    {"filter": {"metricsFormat": [r"(\w+)=([\d.]+)"]}},
    {"filter": {"metricsFormat": [r"(\w+)=[\d.]+"]}},
    {"filter": {"metricsFormat": [r"(?=x)(\w+)=([\d.]+)"]}},
    {"filter": {"metricsFormat": [r"(\w+)=([\d.]+)\z"]}},
    {"httpGet": {"port": 8080, "path": "/metrics"}},
    {"httpGet": {"port": 0, "path": "metrics"}},
]


def param(name: str, ptype: str) -> dict[str, Any]:
    if ptype in ("categorical", "discrete"):
        return {"name": name, "parameterType": ptype, "feasibleSpace": {"list": ["1", "2", "4"]}}
    return {"name": name, "parameterType": ptype, "feasibleSpace": {"min": "1", "max": "8"}}


def base_experiment() -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "digits"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy", "additionalMetricNames": ["loss"]},
            "algorithm": {"algorithmName": "random"},
            "maxTrialCount": 4,
            "parallelTrialCount": 2,
            "maxFailedTrialCount": 1,
            "parameters": [param("lr", "double"), param("units", "int"), param("opt", "categorical")],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "lr", "reference": "lr"},
                    {"name": "units", "reference": "units"},
                    {"name": "opt", "reference": "opt"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "training-container",
                                        "image": "train:1",
                                        "command": [
                                            "python",
                                            "train.py",
                                            "--lr=${trialParameters.lr}",
                                            "--units=${trialParameters.units}",
                                            "--opt=${trialParameters.opt}",
                                        ],
                                    }
                                ],
                            }
                        }
                    },
                },
            },
        },
    }


def _containers(exp):
    return exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]


TEMPLATE_MUTATIONS = [
    "none",
    "none",
    "none",
    "drop_trial_param",
    "dup_name",
    "dup_ref",
    "unknown_ref",
    "brace_name",
    "meta_name",
    "meta_unanchored",
    "meta_label",
    "meta_label_missing",
    "missing_placeholder",
    "extra_placeholder",
    "metadata_name",
    "no_api_version",
    "tfjob",
    "unknown_kind",
    "config_map",
    "config_map_incomplete",
    "both_sources",
    "no_source",
    "no_trial_params",
    "unknown_job_field",
    "conditions_given",
    "no_primary",
    "no_template",
    "empty_ref",
    "unused_param",
    "meta_namespace",
    "meta_kind",
    "meta_bogus",
]


def mutate_template(exp: dict[str, Any], how: str) -> None:
    spec = exp["spec"]
    tt = spec["trialTemplate"]
    tps = tt["trialParameters"]
    cmd = _containers(exp)[0]["command"]
    if how == "drop_trial_param":
        tps.pop()
        cmd.pop()
    elif how == "dup_name":
        tps.append({"name": "lr", "reference": "units"})
    elif how == "dup_ref":
        tps.append({"name": "lr2", "reference": "lr"})
        cmd.append("--lr2=${trialParameters.lr2}")
    elif how == "unknown_ref":
        tps[0]["reference"] = "ghost"
    elif how == "brace_name":
        tps.append({"name": "a}b", "reference": "units"})
    elif how == "empty_ref":
        tps[0]["reference"] = ""
    elif how in (
        "meta_name",
        "meta_unanchored",
        "meta_label",
        "meta_label_missing",
        "meta_namespace",
        "meta_kind",
        "meta_bogus",
    ):
        ref = {
            "meta_name": "${trialSpec.Name}",
            "meta_unanchored": "x-${trialSpec.Name}",
            "meta_label": "${trialSpec.Labels[app]}",
            "meta_label_missing": "${trialSpec.Labels[nope]}",
            "meta_namespace": "${trialSpec.Namespace}",
            "meta_kind": "${trialSpec.Kind}",
            "meta_bogus": "${trialSpec.Bogus}",
        }[how]
        tps.append({"name": "meta", "reference": ref})
        cmd.append("--name=${trialParameters.meta}")
        tt["trialSpec"]["metadata"] = {"labels": {"app": "digits"}}
    elif how == "missing_placeholder":
        cmd.pop(2)
    elif how == "extra_placeholder":
        cmd.append("--x=${trialParameters.ghost}")
    elif how == "metadata_name":
        tt["trialSpec"]["metadata"] = {"name": "job"}
    elif how == "no_api_version":
        del tt["trialSpec"]["apiVersion"]
    elif how == "tfjob":
        tt["trialSpec"]["apiVersion"], tt["trialSpec"]["kind"] = "kubeflow.org/v1", "TFJob"
    elif how == "unknown_kind":
        tt["trialSpec"]["apiVersion"], tt["trialSpec"]["kind"] = "example.com/v1", "Widget"
    elif how == "config_map":
        del tt["trialSpec"]
        tt["configMap"] = {"configMapName": "tpl", "configMapNamespace": "kubeflow", "templatePath": "job.yaml"}
    elif how == "config_map_incomplete":
        del tt["trialSpec"]
        tt["configMap"] = {"configMapName": "tpl"}
    elif how == "both_sources":
        tt["configMap"] = {"configMapName": "tpl", "configMapNamespace": "kubeflow", "templatePath": "job.yaml"}
    elif how == "no_source":
        del tt["trialSpec"]
    elif how == "no_trial_params":
        del tt["trialParameters"]
    elif how == "unknown_job_field":
        tt["trialSpec"]["spec"]["bogusField"] = 1
    elif how == "conditions_given":
        tt["successCondition"], tt["failureCondition"] = "status.done", "status.failed"
    elif how == "no_primary":
        del tt["primaryContainerName"]
    elif how == "no_template":
        del spec["trialTemplate"]
    elif how == "unused_param":
        spec.setdefault("parameters", []).append(param("extra", "double"))


@st.composite
def experiments(draw) -> dict[str, Any]:
    exp = base_experiment()
    spec = exp["spec"]
    exp["metadata"]["name"] = draw(st.sampled_from(NAMES[:1] * 6 + NAMES))
    for key in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount"):
        if draw(st.integers(0, 3)) == 0:
            value = draw(st.sampled_from(COUNTS))
            if value is None:
                spec.pop(key, None)
            else:
                spec[key] = value
    if draw(st.integers(0, 4)) == 0:
        objective = spec["objective"]
        objective["type"] = draw(st.sampled_from(OBJECTIVE_TYPES))
        objective["objectiveMetricName"] = draw(st.sampled_from(["accuracy", "accuracy", ""]))
        objective["additionalMetricNames"] = draw(st.sampled_from([[], ["loss"], ["accuracy"], ["loss", "val"]]))
        if draw(st.booleans()):
            objective["metricStrategies"] = draw(
                st.sampled_from([[], [{"name": "accuracy", "value": "latest"}], [{"name": "loss", "value": "max"}]])
            )
        if draw(st.integers(0, 9)) == 0:
            del spec["objective"]
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(ALGORITHMS))
        spec["algorithm"] = {"algorithmName": name}
        if draw(st.integers(0, 9)) == 0:
            del spec["algorithm"]
    early = draw(st.sampled_from(EARLY))
    if early is not None:
        spec["earlyStopping"] = {"algorithmName": early}
    resume = draw(st.sampled_from(RESUME))
    if resume is not None:
        spec["resumePolicy"] = resume
    if draw(st.integers(0, 2)) == 0:
        for p in spec["parameters"]:
            if draw(st.integers(0, 2)) == 0:
                p["parameterType"] = draw(st.sampled_from(PTYPES))
            space_kind = draw(
                st.sampled_from(["keep", "keep", "min", "max", "list", "both", "step", "empty", "minmaxlist"])
            )
            fs = p["feasibleSpace"]
            if space_kind == "min":
                p["feasibleSpace"] = {"min": "1"}
            elif space_kind == "max":
                p["feasibleSpace"] = {"max": "8"}
            elif space_kind == "list":
                p["feasibleSpace"] = {"list": ["1", "2"]}
            elif space_kind == "both":
                p["feasibleSpace"] = {"min": "1", "max": "8", "list": ["1"]}
            elif space_kind == "step":
                p["feasibleSpace"] = {**fs, "step": "1"}
            elif space_kind == "empty":
                p["feasibleSpace"] = {}
            elif space_kind == "minmaxlist":
                p["feasibleSpace"] = {"min": "1", "max": "8"}
            dist = draw(st.sampled_from(DISTRIBUTIONS))
            if dist is not None:
                p["feasibleSpace"]["distribution"] = dist
    if draw(st.integers(0, 19)) == 0:
        spec["nasConfig"] = {"graphConfig": {"numLayers": 2}}
        if draw(st.booleans()):
            spec.pop("parameters")
    mutate_template(exp, draw(st.sampled_from(TEMPLATE_MUTATIONS)))
    collector = draw(st.sampled_from(COLLECTORS))
    source = draw(st.sampled_from(SOURCES))
    if collector is not None or source is not None:
        mc = {}
        if collector is not None:
            mc["collector"] = copy.deepcopy(collector)
        if source is not None:
            mc["source"] = copy.deepcopy(source)
        spec["metricsCollectorSpec"] = mc
    return exp
