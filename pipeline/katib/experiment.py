"""A Katib Experiment: parse the YAML, fill in the defaults Katib's mutating
webhook would (`experiment_defaults.go`), and read it through one typed view.

`Experiment.raw` stays a plain dict shaped exactly like the YAML, so what we
show, lint and run is what `kubectl apply` sends; every consumer reads fields
through the view's properties instead of indexing the dict. Validation is the
linter's (`pipeline.lint.load`), one layer up: this module only parses."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
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
TRAINJOB_PRIMARY_POD_LABELS = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}
DEFAULT_PROMETHEUS_PATH = "/metrics"
DEFAULT_PROMETHEUS_PORT = 8080


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Parse one Experiment from a YAML file; any problem is a one-line UserError."""
    path = Path(path)
    text = read_user_file(path, "an Experiment YAML file")
    return parse_experiment(text, source=str(path))


# Plain scalars that PyYAML reads as strings but Kubernetes' YAML 1.1 reader (kubectl, the API server) as booleans
YAML11_ONLY_BOOLEANS = ("y", "Y", "n", "N")


class KubernetesSafeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings YAML 1.1 reads as booleans, so kubectl reads what we wrote."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if value in YAML11_ONLY_BOOLEANS else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


KubernetesSafeDumper.add_representer(str, _represent_str)


def dump_yaml(obj: Any, **options: Any) -> str:
    """YAML that means the same to PyYAML and to Kubernetes (yaml.safe_dump writes a plain `y`)."""
    return yaml.dump(obj, Dumper=KubernetesSafeDumper, **options)


def _refuse_yaml11_booleans(text: str, source: str) -> None:
    """An unquoted `y` or `n` means a string here and a boolean to `kubectl apply`: the same file would mean two
    things (on Katib: `cannot unmarshal bool into ... of type string`), so it is refused, with where to quote."""
    stack = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.value in YAML11_ONLY_BOOLEANS:
                mark = node.start_mark
                raise UserError(
                    f"{source}: line {mark.line + 1}, column {mark.column + 1}: an unquoted {node.value} is a boolean "
                    f'to kubectl and Kubernetes (YAML 1.1), a string here: write "{node.value}"'
                )
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


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
    _refuse_yaml11_booleans(text, source)
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
    strategy = default_strategy(objective.get("type"))
    if objective.get("metricStrategies") is None:
        objective["metricStrategies"] = []
    strategies = objective["metricStrategies"]
    if not isinstance(strategies, list):
        return
    # Katib's setDefaultObjective, quirks included: the objective gets one unless a strategy
    # names it; each additionalMetricNames entry gets one unless a strategy (other than the
    # objective's) named it BEFORE defaulting, so a repeated or objective-named entry gets a
    # second one.
    objective_name = objective.get("objectiveMetricName") or ""
    names = [s.get("name", "") if isinstance(s, dict) else "" for s in strategies]
    given = {n for n in names if n != objective_name}
    if objective_name not in names:
        strategies.append({"name": objective_name, "value": strategy})
    additional = objective.get("additionalMetricNames")
    for name in additional if isinstance(additional, list) else []:
        if isinstance(name, str) and name not in given:
            strategies.append({"name": name, "value": strategy})


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


# --- the typed view --------------------------------------------------------------------------------


def default_strategy(objective_type: Any) -> str:
    """Katib's metricStrategy default: max when maximizing, min when minimizing, else latest."""
    return {"maximize": "max", "minimize": "min"}.get(objective_type, "latest")


@dataclass(frozen=True)
class Param:
    """One entry of spec.parameters, parsed (values stay Katib strings for discrete/categorical)."""

    name: str
    type: str  # double | int | discrete | categorical
    min: float | None = None
    max: float | None = None
    step: float | None = None
    distribution: str = DEFAULT_DISTRIBUTION
    choices: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, p: dict[str, Any], where: str) -> Param:
        fs = p.get("feasibleSpace") or {}
        ptype = p.get("parameterType")
        if ptype in ("discrete", "categorical"):
            return cls(
                p["name"],
                ptype,
                choices=tuple(str(v) for v in fs.get("list") or []),
                distribution=fs.get("distribution") or DEFAULT_DISTRIBUTION,
            )
        if ptype not in ("double", "int"):
            raise UserError(f"{where}.parameterType: {ptype!r} (expected double, int, discrete, categorical)")

        def num(key):
            v = fs.get(key)
            if v in (None, ""):
                return None
            try:
                return float(v)
            except (TypeError, ValueError):
                raise UserError(f"{where}.feasibleSpace.{key}: {v!r} is not a number") from None

        lo, hi, step = num("min"), num("max"), num("step")
        if lo is None or hi is None:
            raise UserError(f"{where}.feasibleSpace: both min and max are needed for a {ptype} parameter")
        if lo > hi:
            raise UserError(f"{where}.feasibleSpace: min {lo} > max {hi}")
        return cls(p["name"], ptype, lo, hi, step, fs.get("distribution") or DEFAULT_DISTRIBUTION)

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "double")

    @property
    def low(self) -> float:
        """A numeric parameter's feasibleSpace.min (`from_spec` refuses one without it)."""
        if self.min is None:
            raise ValueError(f"parameter {self.name!r} ({self.type}) has no min")
        return self.min

    @property
    def high(self) -> float:
        """A numeric parameter's feasibleSpace.max (`from_spec` refuses one without it)."""
        if self.max is None:
            raise ValueError(f"parameter {self.name!r} ({self.type}) has no max")
        return self.max


@dataclass(frozen=True)
class Objective:
    type: str  # maximize | minimize
    metric: str  # objectiveMetricName
    additional: tuple[str, ...] = ()
    goal: float | None = None
    strategies: dict[str, str] = field(default_factory=dict)  # metric -> min | max | latest

    @property
    def maximize(self) -> bool:
        return self.type == "maximize"

    @property
    def metric_names(self) -> list[str]:
        """The objective first, then the additional metrics (each once)."""
        return [self.metric] + [m for m in self.additional if m != self.metric]

    def strategy(self, metric: str | None = None) -> str:
        return self.strategies.get(metric or self.metric, default_strategy(self.type))

    def better(self, a: float, b: float) -> bool:
        """Whether value `a` is strictly better than `b` for this objective."""
        return a > b if self.maximize else a < b

    def reached(self, value: float) -> bool:
        """Katib's goal check (inclusive); False without a goal."""
        if self.goal is None:
            return False
        return value >= self.goal if self.maximize else value <= self.goal


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


class Experiment:
    """A defaulted Katib Experiment. Build it with `Experiment(dict)`/`load_unchecked` here (parse only)
    or `pipeline.lint.load` (parse, default and validate: what every command uses)."""

    def __init__(self, raw: dict[str, Any], source: str = "<experiment>"):
        self.raw = with_defaults(raw)
        self.source = source

    # -- metadata and counts
    @property
    def spec(self) -> dict[str, Any]:
        return self.raw["spec"]

    @property
    def name(self) -> str:
        return (self.raw.get("metadata") or {}).get("name", "experiment")

    @property
    def namespace(self) -> str | None:
        return (self.raw.get("metadata") or {}).get("namespace")

    @property
    def max_trial_count(self) -> int | None:
        return _optional_int(self.spec.get("maxTrialCount")) or None

    @property
    def parallel_trial_count(self) -> int:
        return int(self.spec.get("parallelTrialCount") or DEFAULT_PARALLEL_TRIAL_COUNT)

    @property
    def max_failed_trial_count(self) -> int | None:
        return _optional_int(self.spec.get("maxFailedTrialCount"))

    @property
    def resume_policy(self) -> str:
        return self.spec.get("resumePolicy") or DEFAULT_RESUME_POLICY

    # -- objective, algorithm, early stopping
    @property
    def objective(self) -> Objective:
        o = self.spec.get("objective") or {}
        goal = o.get("goal")
        strategies: dict[str, str] = {}
        for s in o.get("metricStrategies") or []:  # the first strategy naming a metric wins, as in Katib
            if isinstance(s, dict) and "name" in s and "value" in s:
                strategies.setdefault(s["name"], s["value"])
        return Objective(
            type=o.get("type", ""),
            metric=o.get("objectiveMetricName", ""),
            additional=tuple(o.get("additionalMetricNames") or ()),
            goal=None if goal in (None, "") else float(goal),
            strategies=strategies,
        )

    @property
    def algorithm_name(self) -> str:
        return (self.spec.get("algorithm") or {}).get("algorithmName", "")

    @property
    def algorithm_settings(self) -> dict[str, str]:
        """name -> value as Katib hands them to the service (strings)."""
        return settings_dict(self.spec.get("algorithm"))

    @property
    def early_stopping_name(self) -> str | None:
        return (self.spec.get("earlyStopping") or {}).get("algorithmName")

    @property
    def early_stopping_settings(self) -> dict[str, str]:
        return settings_dict(self.spec.get("earlyStopping"))

    @property
    def parameters(self) -> list[Param]:
        return [Param.from_spec(p, f"spec.parameters[{i}]") for i, p in enumerate(self.spec.get("parameters") or [])]

    # -- trial template and collector
    @property
    def trial_template(self) -> dict[str, Any]:
        return self.spec["trialTemplate"]

    @property
    def trial_spec(self) -> dict[str, Any]:
        return self.trial_template["trialSpec"]

    @property
    def primary_container_name(self) -> str:
        return self.trial_template.get("primaryContainerName", "")

    def primary_container(self, trial_spec: dict[str, Any] | None = None) -> dict[str, Any]:
        """The primary container of `trial_spec` (default: the template's), a batch/v1 Job's pod."""
        return primary_container(trial_spec if trial_spec is not None else self.trial_spec, self.primary_container_name)

    @property
    def collector_kind(self) -> str:
        return ((self.spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")

    @property
    def collector_source(self) -> dict[str, Any]:
        return (self.spec.get("metricsCollectorSpec") or {}).get("source") or {}

    # -- changes (each returns a new Experiment; the file is never touched)
    def with_spec(self, **changes: Any) -> Experiment:
        raw = copy.deepcopy(self.raw)
        for key, value in changes.items():
            if value is None:
                raw["spec"].pop(key, None)
            else:
                raw["spec"][key] = value
        return Experiment(raw, self.source)


def settings_dict(block: Any) -> dict[str, str]:
    """An algorithm's / early stopping's `algorithmSettings` as name -> value string."""
    out: dict[str, str] = {}
    entries = block.get("algorithmSettings") if isinstance(block, dict) else None
    for s in entries if isinstance(entries, list) else []:
        if isinstance(s, dict) and "name" in s:
            out[str(s["name"])] = str(s.get("value"))
    return out


def primary_container(trial_spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The container called `name` in a batch/v1 Job trial spec."""
    pod = ((trial_spec.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        if container.get("name") == name:
            return container
    raise UserError(f"spec.trialTemplate.primaryContainerName: no container named {name!r} in the trial template")


def load_unchecked(path: str | Path) -> Experiment:
    """Parse a YAML file into the typed, defaulted view, unvalidated: an Experiment Katib would reject
    comes back too. Commands load with `pipeline.lint.load` (parse, default and validate)."""
    return Experiment(load_experiment(path), str(path))
