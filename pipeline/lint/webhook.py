"""Katib's admission rules (the validating webhook, `validator.go` in v0.19.0),
applied to the defaulted spec as the webhook sees it, plus the mistakes Katib
lets through, reported as warnings "stricter than Katib".

Each `check_*` takes the defaulted Experiment and returns Findings whose paths
name the field (`spec.parameters[2].feasibleSpace.min`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pipeline.katib import algorithms, goregex, medianstop, render
from pipeline.lint.fields import check_job, katib_config
from pipeline.lint.problems import Findings, as_dict, as_int, as_list, settings_of
from trial.metrics import KATIB_METRIC_NAME

KATIB_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # Katib matches only a prefix of the name
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
PARAMETER_TYPES = ("double", "int", "discrete", "categorical", "unknown")
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal", "unknown")
RESUME_POLICIES = ("", "Never", "LongRunning", "FromVolume")
META_KEYS = ("Name", "Namespace", "Kind", "APIVersion", "Annotations", "Labels")
PLACEHOLDER = re.compile(r"\$\{trialParameters\..+?\}")
META_REF = re.compile(r"\$\{trialSpec\.(.+?)\}")
AUTO_INJECT_COLLECTORS = ("StdOut", "TensorFlowEvent", "File", "PrometheusMetric")


def check_name(exp: dict[str, Any]) -> Findings:
    found = Findings()
    name = as_dict(exp.get("metadata")).get("name")
    if not isinstance(name, str) or not name:
        found.error("metadata.name", "required: Katib needs a name (lower case, at most 40 characters)")
    elif not KATIB_NAME.match(name) or len(name) > 40:
        found.error(
            "metadata.name",
            f"{name!r}: must start with a lower-case letter and be at most 40 characters "
            "(regex '^[a-z]([-a-z0-9]*[a-z0-9])?')",
        )
    elif not DNS_SUBDOMAIN.fullmatch(name):
        found.error("metadata.name", f"{name!r}: not a valid Kubernetes name (lower-case letters, digits, '-', '.')")
    elif not KATIB_NAME.fullmatch(name):
        found.warning(
            "metadata.name",
            f"{name!r}: Katib checks only how the name starts, but its suggestion "
            "Service and trial names need letters, digits and '-' only",
        )
    return found


def check_counts(exp: dict[str, Any]) -> Findings:
    found = Findings()
    spec = as_dict(exp.get("spec"))
    max_trials = as_int(spec.get("maxTrialCount"))
    parallel = as_int(spec.get("parallelTrialCount"))
    max_failed = as_int(spec.get("maxFailedTrialCount"))
    if max_failed is not None and max_failed < 0:
        found.error("spec.maxFailedTrialCount", f"{max_failed}: should not be less than 0")
    if max_trials is not None and max_trials <= 0:
        found.error("spec.maxTrialCount", f"{max_trials}: must be greater than 0")
    if parallel is not None and parallel <= 0:
        found.error("spec.parallelTrialCount", f"{parallel}: must be greater than 0")
    if max_failed is not None and max_trials is not None and max_failed > max_trials:
        found.error(
            "spec.maxFailedTrialCount",
            f"{max_failed}: should be less than or equal to spec.maxTrialCount ({max_trials})",
        )
    if parallel is not None and max_trials is not None and parallel > max_trials:
        found.error(
            "spec.parallelTrialCount", f"{parallel}: should be less than or equal to spec.maxTrialCount ({max_trials})"
        )
    if spec.get("maxTrialCount") is None:
        found.warning(
            "spec.maxTrialCount",
            "not set: the Experiment runs until the goal is reached or the "
            "algorithm runs out of suggestions (random search never does)",
        )
    return found


def check_objective(exp: dict[str, Any]) -> Findings:
    found = Findings()
    objective = as_dict(exp.get("spec")).get("objective")
    if objective is None:
        found.error("spec.objective", "required: must be specified")
        return found
    objective = as_dict(objective)
    if objective.get("type") not in ("minimize", "maximize"):
        found.error("spec.objective.type", f"{objective.get('type')!r}: must be minimize or maximize")
    name = objective.get("objectiveMetricName")
    if not name:
        found.error("spec.objective.objectiveMetricName", "required: must be specified")
    additional = as_list(objective.get("additionalMetricNames"))
    if name and name in additional:
        found.error("spec.objective.additionalMetricNames", f"should not contain the objective metric {name!r}")
    for i, metric in enumerate(additional):
        if metric in additional[:i]:
            found.warning(f"spec.objective.additionalMetricNames[{i}]", f"{metric!r} is listed twice")
    metrics = {name, *additional}
    for i, strategy in enumerate(as_list(objective.get("metricStrategies"))):
        strategy = as_dict(strategy)
        if strategy.get("value") not in ("min", "max", "latest"):
            found.warning(
                f"spec.objective.metricStrategies[{i}].value", f"{strategy.get('value')!r}: not one of min, max, latest"
            )
        if strategy.get("name") not in metrics:
            found.warning(
                f"spec.objective.metricStrategies[{i}].name",
                f"{strategy.get('name')!r} is neither the objective nor an additional metric",
            )
    return found


def check_algorithm(exp: dict[str, Any]) -> Findings:
    found = Findings()
    spec = as_dict(exp.get("spec"))
    config = katib_config()
    for field, enabled, required in (("algorithm", "suggestions", True), ("earlyStopping", "earlyStoppings", False)):
        block = spec.get(field)
        if block is None:
            if required:
                found.error(f"spec.{field}", "required: must be specified")
            continue
        name = as_dict(block).get("algorithmName")
        if not name:
            found.error(f"spec.{field}.algorithmName", "required: must be specified")
        elif field == "algorithm" and name not in config[enabled] and algorithms.is_extension(name):
            found.note(
                f"spec.{field}.algorithmName",
                f"{name!r} is this project's suggestion service, not one of "
                "Katib's built-in algorithms: register it in the cluster's "
                "katib-config (deploy/katib-config/asha.yaml), or Katib's "
                "webhook rejects the Experiment",
            )
        elif name not in config[enabled]:
            found.error(
                f"spec.{field}.algorithmName",
                f"{name!r} is not enabled in Katib's standalone katib-config "
                f"(enabled: {', '.join(sorted(config[enabled]))})",
            )
    policy = spec.get("resumePolicy") or ""
    if policy not in RESUME_POLICIES:
        found.error("spec.resumePolicy", f"{policy!r}: invalid ResumePolicyType (Never, LongRunning, FromVolume)")
    return found


def _number(text: Any, integer: bool) -> float | int | None:
    try:
        return int(text) if integer else float(text)
    except (TypeError, ValueError):
        return None


def check_parameters(exp: dict[str, Any]) -> Findings:
    found = Findings()
    spec = as_dict(exp.get("spec"))
    params = as_list(spec.get("parameters"))
    if not params and spec.get("nasConfig") is None:
        found.error("spec.parameters", "spec.parameters or spec.nasConfig must be specified")
    if params and spec.get("nasConfig") is not None:
        found.error("spec", "only one of spec.parameters and spec.nasConfig can be specified")
    seen: set[Any] = set()  # the names as the YAML has them, whatever their type
    for i, param in enumerate(params):
        param, path = as_dict(param), f"spec.parameters[{i}]"
        name, ptype = param.get("name"), param.get("parameterType")
        if not name:
            found.warning(f"{path}.name", "empty: no trial parameter can reference it")
        elif name in seen:
            found.warning(f"{path}.name", f"{name!r} is defined twice; the suggestion services keep one")
        seen.add(name)
        space = as_dict(param.get("feasibleSpace"))
        spath = f"{path}.feasibleSpace"
        if ptype not in PARAMETER_TYPES:
            found.error(f"{path}.parameterType", f"{ptype!r} is not supported (double, int, discrete, categorical)")
        elif ptype == "unknown":
            found.warning(f"{path}.parameterType", "'unknown': no suggestion service can sample it")
        dist = space.get("distribution")
        if dist and dist not in DISTRIBUTIONS:
            found.error(f"{spath}.distribution", f"{dist!r} is not supported (uniform, logUniform, normal, logNormal)")
        if space == {}:  # only possible before defaulting; kept for faithfulness
            found.error(spath, "feasibleSpace must be specified")
            continue
        if ptype in ("int", "double"):
            if space.get("list"):
                found.error(f"{spath}.list", f"feasibleSpace.list is not supported for parameterType {ptype}")
            if not space.get("max") or not space.get("min"):
                found.error(
                    f"{spath}.max",
                    f"feasibleSpace.max or feasibleSpace.min must be specified for parameterType {ptype}",
                )
            _check_range(found, space, spath, ptype)
        elif ptype in ("categorical", "discrete"):
            if space.get("max") or space.get("min") or space.get("step"):
                found.error(spath, f"feasibleSpace .max, .min and .step is not supported for parameterType {ptype}")
            values = as_list(space.get("list"))
            if not values:
                found.warning(f"{spath}.list", f"empty: a {ptype} parameter needs at least one value")
            for j, value in enumerate(values):
                if value in values[:j]:
                    found.warning(f"{spath}.list[{j}]", f"{value!r} is listed twice")
                if ptype == "discrete" and _number(value, False) is None:
                    found.warning(f"{spath}.list[{j}]", f"{value!r}: discrete values are numbers; use categorical")
    return found


def _check_range(found: Findings, space: dict[str, Any], spath: str, ptype: str) -> None:
    integer = ptype == "int"
    bounds = {}
    for key in ("min", "max", "step"):
        text = space.get(key)
        if text in (None, ""):
            continue
        value = _number(text, integer)
        if value is None or (not integer and math.isnan(value)):
            kind = "an integer" if integer else "a number"
            found.error(f"{spath}.{key}", f"{text!r} is not {kind}: the suggestion services cannot parse it")
        else:
            bounds[key] = value
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        found.warning(f"{spath}.min", f"min {space['min']} is greater than max {space['max']}")
    if "step" in bounds and bounds["step"] <= 0:
        found.error(f"{spath}.step", f"{space['step']!r}: step must be positive; the suggestion services fail")


def trial_template_text(template: dict[str, Any]) -> str:
    """The trial spec as Katib's webhook searches it: its JSON (Go sorts the keys)."""
    return json.dumps(template.get("trialSpec"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_meta_key(reference: str) -> bool:
    m = META_REF.search(reference)
    if not m:
        return False
    key = m.group(1)
    if key in META_KEYS:
        return True
    sub = re.search(r"(.+)\[(.+)]", key)
    return sub is not None and sub.group(1) in META_KEYS


def check_trial_template(exp: dict[str, Any]) -> Findings:
    found = Findings()
    spec = as_dict(exp.get("spec"))
    template = spec.get("trialTemplate")
    path = "spec.trialTemplate"
    if template is None:
        found.error(path, "required: must be specified")
        return found
    template = as_dict(template)
    if not template.get("primaryContainerName"):
        found.error(f"{path}.primaryContainerName", "required: must be specified")
    if not template.get("successCondition") or not template.get("failureCondition"):
        found.error(
            path,
            "successCondition and failureCondition must be specified (Katib fills them in only "
            "for Job, TFJob, PyTorchJob, XGBoostJob, MPIJob and TrainJob)",
        )
    if template.get("trialParameters") is None:
        found.error(f"{path}.trialParameters", "required: must be specified")
        return found
    trial_spec, config_map = template.get("trialSpec"), template.get("configMap")
    if trial_spec is None and config_map is None:
        found.error(path, "spec.trialTemplate.trialSpec or spec.trialTemplate.configMap must be specified")
        return found
    if trial_spec is not None and config_map is not None:
        found.error(path, "only one of spec.trialTemplate.trialSpec or spec.trialTemplate.configMap can be specified")
        return found
    if config_map is not None:
        cm = as_dict(config_map)
        if not (cm.get("configMapName") and cm.get("configMapNamespace") and cm.get("templatePath")):
            found.error(f"{path}.configMap", "configMapName, configMapNamespace and templatePath must be specified")
        else:
            found.note(
                f"{path}.configMap",
                "the trial template lives in a ConfigMap on the cluster: "
                "its placeholders and Job fields are not checked offline",
            )
        return found
    if not isinstance(trial_spec, dict):
        return found  # the field-type check reports it

    text = trial_template_text(template)
    param_names = {as_dict(p).get("name") for p in as_list(spec.get("parameters"))}
    names: set[str] = set()
    refs: set[str] = set()
    tp_path = f"{path}.trialParameters"
    for i, tp in enumerate(as_list(template.get("trialParameters"))):
        tp = as_dict(tp)
        name, ref = tp.get("name"), tp.get("reference")
        if not name or not ref or "{" in str(name) or "}" in str(name):
            found.error(f"{tp_path}[{i}]", "name and reference must be specified and name must not contain '{' or '}'")
            continue
        if name in names:
            found.error(f"{tp_path}[{i}].name", f"parameter name {name!r} can't be duplicated")
            continue
        if ref in refs:
            found.error(f"{tp_path}[{i}].reference", f"parameter reference {ref!r} can't be duplicated")
            continue
        names.add(name)
        refs.add(ref)
        if param_names and not is_meta_key(ref) and ref not in param_names:
            found.error(
                f"{tp_path}[{i}].reference",
                f"{ref!r} does not exist in spec.parameters ({', '.join(sorted(map(str, param_names - {None})))})",
            )
        placeholder = render.placeholder(name)
        if placeholder not in text:
            found.error(
                f"{tp_path}[{i}].name",
                f"{name!r} is not used in spec.trialTemplate.trialSpec (write {placeholder} where the value goes)",
            )
        text = text.replace(placeholder, "test-value")
    left = PLACEHOLDER.findall(text)
    if left:
        found.error(
            f"{path}.trialSpec", f"{', '.join(sorted(set(left)))}: not defined in spec.trialTemplate.trialParameters"
        )
    for i, param in enumerate(as_list(spec.get("parameters"))):
        name = as_dict(param).get("name")
        if name and name not in refs:
            found.fails_later(
                f"spec.parameters[{i}].name",
                f"no trialParameter references {name!r}: Katib's "
                "manifest generator (applyParameters) refuses every "
                "trial when a suggested parameter is not used, so the "
                "Experiment creates no trial at all",
            )
    tmeta = as_dict(trial_spec.get("metadata"))
    for i, tp in enumerate(as_list(template.get("trialParameters"))):
        ref = str(as_dict(tp).get("reference") or "")
        m = META_REF.search(ref)
        sub = re.search(r"(.+)\[(.+)]", m.group(1)) if m else None
        if sub and sub.group(1) in ("Labels", "Annotations"):
            key, index = sub.group(1), sub.group(2)
            if index not in as_dict(tmeta.get(key.lower())):
                found.fails_later(
                    f"{tp_path}[{i}].reference",
                    f"{ref!r}: the trial template's metadata has no {key[:-1].lower()} {index!r}; "
                    f'Katib fails every trial ("failed to fetch {key[:-1]}")',
                )

    job = json.loads(text)
    metadata = as_dict(job.get("metadata"))
    if metadata.get("name") or metadata.get("namespace"):
        found.error(
            f"{path}.trialSpec.metadata", "metadata.name and metadata.namespace in spec.trialTemplate must be omitted"
        )
    api_version, kind = job.get("apiVersion"), job.get("kind")
    if not api_version or not kind:
        found.error(f"{path}.trialSpec", "apiVersion and kind in spec.trialTemplate must be specified")
        return found
    if api_version == "batch/v1" and kind == "Job":
        found.extend(check_job(job, f"{path}.trialSpec"))
    group, _, version = str(api_version).rpartition("/")
    resource = f"{kind}.{version}.{group}" if group else f"{kind}.{version}"
    if resource not in katib_config()["trialResources"]:
        found.warning(
            f"{path}.trialSpec.kind",
            f"{resource}: Katib's controller does not watch this kind "
            "(not in katib-config trialResources); trials would never finish",
        )
    primary = template.get("primaryContainerName")
    if primary and primary not in _container_names(trial_spec):
        found.warning(
            f"{path}.primaryContainerName",
            f"no container named {primary!r} in the trial template: Katib never collects its metrics",
        )
    return found


def _container_names(obj: Any) -> set[str]:
    """Names of every container anywhere in a trial spec (Job, TFJob replicas, ...)."""
    names: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                names.update(str(as_dict(c).get("name")) for c in value)
            else:
                names |= _container_names(value)
    elif isinstance(obj, list):
        for item in obj:
            names |= _container_names(item)
    return names


def check_metrics_collector(exp: dict[str, Any]) -> Findings:
    found = Findings()
    spec = as_dict(exp.get("spec"))
    path = "spec.metricsCollectorSpec"
    mc = as_dict(spec.get("metricsCollectorSpec"))
    kind = as_dict(mc.get("collector")).get("kind")
    source = as_dict(mc.get("source"))
    fs = as_dict(source.get("fileSystemPath"))
    enabled = katib_config()["metricsCollectors"]
    if kind in AUTO_INJECT_COLLECTORS and kind not in enabled:
        found.error(
            f"{path}.collector.kind",
            f"{kind!r} is not enabled in Katib's standalone katib-config (enabled: {', '.join(enabled)})",
        )
    if kind == "File":
        if fs.get("kind") != "File" or not str(fs.get("path", "")).startswith("/"):
            found.error(f"{path}.source.fileSystemPath.path", "an absolute path of kind File is required")
        if fs.get("format") not in ("TEXT", "JSON"):
            found.error(f"{path}.source.fileSystemPath.format", "format of metrics file is required (TEXT or JSON)")
        if fs.get("format") == "JSON" and source.get("filter") is not None:
            found.error(f"{path}.source.filter", "filter must be nil when format of metrics file is JSON")
    elif kind == "TensorFlowEvent":
        if fs.get("kind") != "Directory" or not str(fs.get("path", "")).startswith("/"):
            found.error(
                f"{path}.source.fileSystemPath.path",
                "an absolute directory path (kind Directory) where the TensorFlow event files are is required",
            )
        if fs.get("format"):
            found.error(f"{path}.source.fileSystemPath.format", "must be empty")
    elif kind == "PrometheusMetric":
        http = as_dict(source.get("httpGet"))
        port = http.get("port")
        number = _number(port, True)
        if number is None or number <= 0:
            found.error(f"{path}.source.httpGet.port", f"{port!r}: must be a positive integer")
        if not str(http.get("path", "")).startswith("/"):
            found.error(f"{path}.source.httpGet.path", f"{http.get('path')!r}: must start with '/'")
    elif kind == "Custom":
        if mc.get("collector", {}).get("customCollector") is None:
            found.error(f"{path}.collector.customCollector", "required for metrics collector kind Custom")
        if fs and (not str(fs.get("path", "")).startswith("/") or fs.get("kind") not in ("Directory", "File")):
            found.error(f"{path}.source.fileSystemPath", "needs an absolute path and kind Directory or File")
    elif kind not in ("StdOut", "Push"):
        found.error(
            f"{path}.collector.kind",
            f"{kind!r}: invalid metrics collector kind (StdOut, File, TensorFlowEvent, PrometheusMetric, Custom, Push)",
        )
    formats = as_list(as_dict(source.get("filter")).get("metricsFormat"))
    # The webhook compiles filters (Go RE2) for every kind but StdOut and Push; the StdOut
    # sidecar compiles them only when the trial runs, and crashes on one it cannot compile.
    at_admission = kind not in ("StdOut", "Push")
    for i, fmt in enumerate(formats):
        where = f"{path}.source.filter.metricsFormat[{i}]"
        fmt = str(fmt)
        if kind == "Push":
            continue
        try:
            goregex.compile_go(fmt)
        except goregex.GoRegexError as exc:
            if at_admission:
                found.error(where, f"invalid filter: Go's regexp cannot compile it: {exc}")
            else:
                found.fails_later(
                    where,
                    f"Go's regexp cannot compile this filter ({exc}): the metrics-collector "
                    "sidecar crashes on it and no trial reports a metric",
                )
            continue
        if not goregex.has_two_groups(fmt):
            if at_admission:
                found.error(where, "two top subexpressions are required (metric name, then value)")
            else:
                found.fails_later(
                    where,
                    "the filter needs two top subexpressions (metric name, then value); "
                    "with fewer the sidecar finds no metric and every trial ends "
                    "MetricsUnavailable",
                )
            continue
        if ";" in fmt and kind in ("StdOut", "File"):
            pieces = goregex.sidecar_filters([fmt])
            bad = [piece for piece in pieces if not goregex.go_compiles(piece)]
            if bad:
                found.fails_later(
                    where,
                    f"the filter contains ';': Katib hands the filters to its sidecar joined "
                    f"by ';' and splits them there, so it arrives as {pieces!r}, and "
                    f"{bad[0]!r} does not compile: the sidecar crashes",
                )
            else:
                found.warning(
                    where,
                    f"the filter contains ';': Katib hands the filters to its sidecar joined by "
                    f"';' and splits them there, so it arrives as {pieces!r}, not as written",
                )
    if kind == "Push" and formats:
        found.warning(
            f"{path}.source.filter", "ignored: the Push collector has no sidecar; the trial reports its metrics itself"
        )
    if kind in ("StdOut", "File") and fs.get("format", "TEXT") == "TEXT" and not formats:
        objective = as_dict(spec.get("objective"))
        metrics = [objective.get("objectiveMetricName"), *as_list(objective.get("additionalMetricNames"))]
        for metric in metrics:
            if isinstance(metric, str) and metric and not KATIB_METRIC_NAME.fullmatch(metric):
                found.warning(
                    "spec.objective",
                    f"metric {metric!r} can never match Katib's default filter "
                    "(names are letters, digits, '_', '|', '-')",
                )
    return found


def check_early_stopping(exp: dict[str, Any]) -> Findings:
    """medianstop's own settings check (`ValidateEarlyStoppingSettings`)."""
    found = Findings()
    early = as_dict(exp.get("spec")).get("earlyStopping")
    if as_dict(early).get("algorithmName") != medianstop.ALGORITHM:
        return found
    kind = as_dict(as_dict(as_dict(exp.get("spec")).get("metricsCollectorSpec")).get("collector")).get("kind")
    if kind not in medianstop.SIDECAR_COLLECTORS:
        found.warning(
            "spec.earlyStopping",
            f"never applied with the {kind} collector: Katib injects no "
            "metrics-collector sidecar, which is what stops a trial",
        )
    else:
        parallel = as_dict(exp.get("spec")).get("parallelTrialCount", 3)
        found.note(  # not a mistake in the Experiment: how Katib v0.19 runs every medianstop one
            "spec.earlyStopping",
            "Katib v0.19 never records an early-stopped trial's observation (its collector waits for ever for "
            "the process it stopped, so the trial's Job never ends; kubeflow/katib#1377) and starts no new trial "
            f"while one lacks it: each early-stopped trial takes one of the {parallel} parallel slot(s) for good "
            "(with retain: true its pod keeps running), and once that many are stopped the Experiment stays "
            "Running; the dry-run does the same (docs/dryrun.md)",
        )
    for i, name, value in settings_of(early):
        where = f"spec.earlyStopping.algorithmSettings[{i}]"
        rule = medianstop.SETTINGS.get(name)
        if rule is None:
            found.error(
                f"{where}.name", f"unknown setting {name!r} for algorithm medianstop ({', '.join(medianstop.SETTINGS)})"
            )
        elif problem := rule.check(name, value, medianstop.ALGORITHM):
            found.error(f"{where}.value", problem)
    return found


# What Katib's pod webhook (inject_webhook.go, wrapWorkerContainer) appends to the primary container's command,
# joined into one `sh -c` string, for the collectors whose sidecar waits on the trial's process.
WRAPPED_BY_KATIB = {
    "StdOut": "1>/var/log/katib/metrics.log 2>&1 && echo completed > /var/log/katib/$$$$.pid",
    "File": "&& echo completed > /var/log/katib/$$$$.pid",
    "TensorFlowEvent": "&& echo completed > /var/log/katib/$$$$.pid",
}


def check_wrapped_command(exp: dict[str, Any]) -> Findings:
    """A trial command that ends with a newline (a YAML `|` block): Katib appends its wrapper after it, on a
    line of its own, so it applies to nothing. Shown on Katib itself (tests/box/test_differential.py)."""
    found = Findings()
    spec = as_dict(exp.get("spec"))
    kind = as_dict(as_dict(spec.get("metricsCollectorSpec")).get("collector")).get("kind", "StdOut")
    template = as_dict(spec.get("trialTemplate"))
    trial_spec = as_dict(template.get("trialSpec"))
    if kind not in WRAPPED_BY_KATIB or trial_spec.get("kind") != "Job":
        return found
    pod = as_dict(as_dict(as_dict(trial_spec.get("spec")).get("template")).get("spec"))
    for i, container in enumerate(as_list(pod.get("containers"))):
        container = as_dict(container)
        if container.get("name") != template.get("primaryContainerName"):
            continue
        words = [("command", j, w) for j, w in enumerate(as_list(container.get("command")))]
        words += [("args", j, w) for j, w in enumerate(as_list(container.get("args")))]
        if not words or not isinstance(words[-1][2], str) or not words[-1][2].rstrip(" \t").endswith("\n"):
            continue
        field, j, _ = words[-1]
        effect = (
            "the trial's output never reaches the StdOut collector: every trial is MetricsUnavailable"
            if kind == "StdOut"
            else "that line is a shell syntax error: every trial fails"
        )
        found.fails_later(
            f"spec.trialTemplate.trialSpec.spec.template.spec.containers[{i}].{field}[{j}]",
            f"it ends with a newline, and Katib appends {WRAPPED_BY_KATIB[kind]!r} after it on a line of its "
            f"own, so {effect}; end the script without one (YAML `|-` or `>-`)",
        )
    return found


ALL_CHECKS = (
    check_name,
    check_counts,
    check_objective,
    check_algorithm,
    check_parameters,
    check_trial_template,
    check_metrics_collector,
    check_wrapped_command,
    check_early_stopping,
)
