"""Read a Katib Experiment YAML and fill in the defaults Katib's mutating webhook
would (`experiment_defaults.go`). The spec stays a plain dict shaped exactly
like the YAML, so what we show, lint and run is what `kubectl apply` sends."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError, read_user_file

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"

DEFAULT_PARALLEL_TRIAL_COUNT = 3
DEFAULT_RESUME_POLICY = "Never"
DEFAULT_DISTRIBUTION = "uniform"
DEFAULT_FILE_METRICS_PATH = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
JOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
KUBEFLOW_JOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Succeeded")#|#(status=="True")#'
KUBEFLOW_JOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
TRAINJOB_SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
TRAINJOB_FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
KUBEFLOW_JOB_KINDS = ("TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob")
KUBEFLOW_JOB_PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
TRAINJOB_PRIMARY_POD_LABELS = {"jobset.sigs.k8s.io/replicatedjob-name": "node",
                               "batch.kubernetes.io/job-completion-index": "0"}
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Parse one Experiment from a YAML file; any problem is a one-line UserError."""
    path = Path(path)
    text = read_user_file(path, "an Experiment YAML file")
    return parse_experiment(text, source=str(path))


def parse_experiment(text: str, source: str = "<text>") -> dict[str, Any]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}: not valid YAML{where}: {problem}") from None
    if not docs:
        raise UserError(f"{source}: empty file, expected one Katib Experiment")
    if len(docs) > 1:
        raise UserError(f"{source}: {len(docs)} YAML documents, expected exactly one Experiment per file")
    exp = docs[0]
    if not isinstance(exp, dict):
        raise UserError(f"{source}: expected a mapping (a Katib Experiment), found {type(exp).__name__}")
    kind = exp.get("kind")
    if kind != KIND:
        raise UserError(f"{source}: kind: expected {KIND!r}, found {kind!r}")
    api = exp.get("apiVersion")
    if api != API_VERSION:
        raise UserError(f"{source}: apiVersion: expected {API_VERSION!r}, found {api!r}")
    if not isinstance(exp.get("metadata"), dict):
        raise UserError(f"{source}: metadata: required mapping is missing")
    if not isinstance(exp.get("spec"), dict):
        raise UserError(f"{source}: spec: required mapping is missing")
    return exp


def with_defaults(exp: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `exp` with Katib's webhook defaults filled in
    (`experiment_defaults.go`: the validating webhook sees this, not the file).

    Tolerant of malformed specs (the linter reports those); it only fills
    fields whose parents have the right shape.
    """
    exp = copy.deepcopy(exp)
    spec = exp.setdefault("spec", {})
    if not isinstance(spec, dict):
        return exp
    if spec.get("parallelTrialCount") is None:
        spec["parallelTrialCount"] = DEFAULT_PARALLEL_TRIAL_COUNT
    if not spec.get("resumePolicy"):
        spec["resumePolicy"] = DEFAULT_RESUME_POLICY
    _default_metric_strategies(spec.get("objective"))
    _default_trial_template(spec.get("trialTemplate"))
    _default_metrics_collector(spec)
    # Katib's FeasibleSpace is a struct value: every parameter gets one, and a
    # distribution, whatever its type (categorical ones too).
    parameters = spec.get("parameters")
    for param in parameters if isinstance(parameters, list) else []:
        if isinstance(param, dict):
            space = param.setdefault("feasibleSpace", {})
            if isinstance(space, dict) and not space.get("distribution"):
                space["distribution"] = DEFAULT_DISTRIBUTION
    return exp


def _default_metric_strategies(objective: Any) -> None:
    if not isinstance(objective, dict):
        return
    # An objective type Katib does not know gets "latest" (the validator rejects it anyway).
    strategy = {"maximize": "max", "minimize": "min"}.get(objective.get("type"), "latest")
    if objective.get("metricStrategies") is None:
        objective["metricStrategies"] = []
    strategies = objective["metricStrategies"]
    if not isinstance(strategies, list):
        return
    named = {s.get("name") for s in strategies if isinstance(s, dict)}
    names = [objective.get("objectiveMetricName")] + list(objective.get("additionalMetricNames") or [])
    for name in names:
        if isinstance(name, str) and name not in named:
            strategies.append({"name": name, "value": strategy})
            named.add(name)


def _default_trial_template(template: Any) -> None:
    if not isinstance(template, dict) or not isinstance(template.get("trialSpec"), dict):
        return
    kind = template["trialSpec"].get("kind")
    if kind == "Job":  # Katib looks at the kind only, not the apiVersion
        conditions = (JOB_SUCCESS_CONDITION, JOB_FAILURE_CONDITION)
        labels = None
    elif kind == "TrainJob":
        conditions = (TRAINJOB_SUCCESS_CONDITION, TRAINJOB_FAILURE_CONDITION)
        labels = TRAINJOB_PRIMARY_POD_LABELS
    elif kind in KUBEFLOW_JOB_KINDS:
        conditions = (KUBEFLOW_JOB_SUCCESS_CONDITION, KUBEFLOW_JOB_FAILURE_CONDITION)
        labels = KUBEFLOW_JOB_PRIMARY_POD_LABELS
    else:
        return
    if not template.get("successCondition"):
        template["successCondition"] = conditions[0]
    if not template.get("failureCondition"):
        template["failureCondition"] = conditions[1]
    if labels and not template.get("primaryPodLabels"):
        template["primaryPodLabels"] = dict(labels)


def _default_metrics_collector(spec: dict[str, Any]) -> None:
    if spec.get("metricsCollectorSpec") is None:
        spec["metricsCollectorSpec"] = {}
    mc = spec["metricsCollectorSpec"]
    if not isinstance(mc, dict):
        return
    if mc.get("collector") is None:
        mc["collector"] = {"kind": "StdOut"}
    collector = mc["collector"]
    if not isinstance(collector, dict):
        return
    kind = collector.get("kind")
    if kind not in ("File", "TensorFlowEvent", "PrometheusMetric"):
        return
    if mc.get("source") is None:
        mc["source"] = {}
    source = mc["source"]
    if not isinstance(source, dict):
        return
    if kind == "PrometheusMetric":
        if source.get("httpGet") is None:
            source["httpGet"] = {}
        http = source["httpGet"]
        if isinstance(http, dict):
            http["path"] = http.get("path") or DEFAULT_PROMETHEUS_PATH
            if http.get("port") in (None, 0, "0", ""):
                http["port"] = DEFAULT_PROMETHEUS_PORT
        return
    if source.get("fileSystemPath") is None:
        source["fileSystemPath"] = {}
    fs = source["fileSystemPath"]
    if not isinstance(fs, dict):
        return
    if kind == "File":
        fs["kind"] = fs.get("kind") or "File"
        fs["path"] = fs.get("path") or DEFAULT_FILE_METRICS_PATH
        fs["format"] = fs.get("format") or "TEXT"
    else:
        fs["kind"] = fs.get("kind") or "Directory"
        fs["path"] = fs.get("path") or DEFAULT_TFEVENT_DIR


def primary_container(exp: dict[str, Any]) -> dict[str, Any]:
    """The trial template's primary container (a batch/v1 Job's pod template)."""
    template = exp["spec"]["trialTemplate"]
    name = template.get("primaryContainerName")
    pod_spec = template["trialSpec"]["spec"]["template"]["spec"]
    for container in pod_spec.get("containers") or []:
        if container.get("name") == name:
            return container
    raise UserError(f"spec.trialTemplate.primaryContainerName: no container named {name!r} in the trial template")
