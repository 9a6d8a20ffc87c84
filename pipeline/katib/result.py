"""Read a tuned Experiment's result: Katib's `status.currentOptimalTrial`, and its Trials.

One reader for every source: `kubectl get experiment -o json`, our local
dry-run's experiment.json (the same shape), the pipeline's tune step, or a bare
currentOptimalTrial object. Katib writes every value as a string; we keep the
assignments as strings (they are substituted into the trial command verbatim)
and parse only the objective value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UserError, read_user_file
from pipeline.katib.collector import UNAVAILABLE
from pipeline.katib.experiment import Experiment, default_strategy
from pipeline.katib.status import TrialOutcome

STRATEGY_FIELDS = {"max": "max", "min": "min", "latest": "latest"}


@dataclass(frozen=True)
class OptimalTrial:
    """The best trial: its name, parameter assignments and observed metrics."""

    name: str
    assignments: dict[str, str]
    # metric name -> {"min": "...", "max": "...", "latest": "..."} (Katib's strings)
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_katib(self) -> dict[str, Any]:
        """Back to Katib's currentOptimalTrial JSON shape."""
        return {
            "bestTrialName": self.name,
            "parameterAssignments": [{"name": k, "value": v} for k, v in self.assignments.items()],
            "observation": {"metrics": [{"name": k, **v} for k, v in self.metrics.items()]},
        }


@dataclass(frozen=True)
class TunedResult:
    """What a result file holds: the Experiment (None for a bare optimal trial) and its best trial."""

    experiment: dict[str, Any] | None
    optimal: OptimalTrial
    source: str


def load_result(path: str | Path) -> TunedResult:
    """Read a Katib-shaped result JSON file; every problem is a UserError naming the file and field."""
    path = Path(path)
    text = read_user_file(path, "a JSON file (experiment.json)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    return parse_result(obj, source=str(path))


def parse_result(obj: Any, source: str = "<result>") -> TunedResult:
    """Accept a whole Experiment object (with status.currentOptimalTrial) or a bare currentOptimalTrial."""
    if not isinstance(obj, dict):
        raise UserError(
            f"{source}: expected a JSON object (a Katib Experiment or its currentOptimalTrial), "
            f"found {type(obj).__name__}"
        )
    if "parameterAssignments" in obj or "bestTrialName" in obj:
        return TunedResult(None, parse_optimal_trial(obj, source, "currentOptimalTrial"), source)
    if obj.get("kind") == "Experiment" or "spec" in obj or "status" in obj:
        if not isinstance(obj.get("spec"), dict):
            raise UserError(f"{source}: spec: required mapping is missing (a Katib Experiment has a spec)")
        status = obj.get("status")
        if not isinstance(status, dict):
            raise UserError(f"{source}: status: missing; the Experiment has not run yet (no currentOptimalTrial)")
        if "currentOptimalTrial" not in status:
            raise UserError(
                f"{source}: status.currentOptimalTrial: missing; no trial of this Experiment has succeeded yet"
            )
        optimal = parse_optimal_trial(status["currentOptimalTrial"], source, "status.currentOptimalTrial")
        return TunedResult(obj, optimal, source)
    raise UserError(
        f"{source}: neither a Katib Experiment (kind: Experiment) nor a currentOptimalTrial object "
        f"(bestTrialName, parameterAssignments)"
    )


def parse_optimal_trial(obj: Any, source: str, where: str) -> OptimalTrial:
    if not isinstance(obj, dict):
        raise UserError(f"{source}: {where}: expected an object, found {type(obj).__name__}")
    assignments_raw = obj.get("parameterAssignments")
    if not assignments_raw:
        # Katib leaves this empty (null) until a trial succeeds with the objective metric.
        raise UserError(f"{source}: {where}.parameterAssignments: empty; no trial has succeeded yet")
    if not isinstance(assignments_raw, list):
        raise UserError(f"{source}: {where}.parameterAssignments: expected a list of {{name, value}}")
    assignments: dict[str, str] = {}
    for i, item in enumerate(assignments_raw):
        here = f"{where}.parameterAssignments[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
            raise UserError(f"{source}: {here}: expected {{name: string, value: string}}, found {item!r}")
        if item["name"] in assignments:
            raise UserError(f"{source}: {here}.name: {item['name']!r} is assigned twice")
        assignments[item["name"]] = str(item["value"])
    metrics: dict[str, dict[str, str]] = {}
    observation = obj.get("observation") or {}
    if not isinstance(observation, dict):
        raise UserError(f"{source}: {where}.observation: expected an object")
    for i, m in enumerate(observation.get("metrics") or []):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise UserError(f"{source}: {where}.observation.metrics[{i}]: expected {{name, min, max, latest}}")
        metrics[m["name"]] = {k: str(m[k]) for k in ("min", "max", "latest") if k in m}
    return OptimalTrial(str(obj.get("bestTrialName") or ""), assignments, metrics)


def objective_spec(experiment: dict[str, Any], source: str = "<experiment>") -> tuple[str, str, str]:
    """(metric name, "maximize"|"minimize", strategy "max"|"min"|"latest") of an Experiment's objective."""
    objective = (experiment.get("spec") or {}).get("objective")
    if not isinstance(objective, dict) or not objective.get("objectiveMetricName"):
        raise UserError(f"{source}: spec.objective.objectiveMetricName: required")
    kind = objective.get("type")
    if kind not in ("maximize", "minimize"):
        raise UserError(f"{source}: spec.objective.type: expected 'maximize' or 'minimize', found {kind!r}")
    name = objective["objectiveMetricName"]
    strategy = Experiment(experiment, source).objective.strategy(name)
    if strategy not in STRATEGY_FIELDS:
        strategy = default_strategy(kind)
    return name, kind, strategy


def objective_value(result: TunedResult, experiment: dict[str, Any] | None = None) -> float:
    """The best trial's objective, read the way Katib compares trials (by the metric's strategy)."""
    experiment = experiment if experiment is not None else result.experiment
    if experiment is None:
        raise UserError(f"{result.source}: a bare currentOptimalTrial has no objective spec; pass the Experiment YAML")
    name, _, strategy = objective_spec(experiment, result.source)
    observed = result.optimal.metrics.get(name)
    if observed is None:
        raise UserError(
            f"{result.source}: currentOptimalTrial.observation.metrics: no metric named {name!r} "
            f"(the objective); found {sorted(result.optimal.metrics) or 'none'}"
        )
    text = observed.get(STRATEGY_FIELDS[strategy])
    try:
        if text is None:
            raise ValueError("no value")
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(
            f"{result.source}: currentOptimalTrial.observation.metrics[{name}].{strategy}: {text!r} is not a number"
        ) from None
    if math.isnan(value):
        raise UserError(f"{result.source}: currentOptimalTrial.observation.metrics[{name}].{strategy}: NaN")
    return value


def reaches(value: float, threshold: float | None, objective_type: str) -> bool:
    """Whether an objective value is good enough to submit: >= for maximize, <= for minimize.

    No threshold means always; inclusive like Katib's objective goal.
    """
    if threshold is None:
        return True
    if objective_type == "maximize":
        return value >= threshold
    if objective_type == "minimize":
        return value <= threshold
    raise ValueError(f"objective type must be 'maximize' or 'minimize', not {objective_type!r}")


def load_trials(path: str | Path, experiment: Experiment) -> list[TrialOutcome]:
    """An Experiment's Trials from `kubectl get trials -l katib.kubeflow.org/experiment=NAME -o json` (or the
    dry-run's trials.json, the same shape), in list order; each objective read by the Experiment's strategy.
    Every problem is a UserError naming the file and field."""
    path = Path(path)
    text = read_user_file(path, "a JSON file (trials.json)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("items"), list):
        raise UserError(
            f"{path}: items: expected a list of Trials (kubectl get trials -l "
            f"katib.kubeflow.org/experiment={experiment.name} -o json)"
        )
    metric, strategy = experiment.objective.metric, experiment.objective.strategy()
    trials = []
    for i, item in enumerate(obj["items"]):
        where = f"{path}: items[{i}]"
        if not isinstance(item, dict) or item.get("kind", "Trial") != "Trial":
            raise UserError(f"{where}: expected a Trial object")
        name = (item.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise UserError(f"{where}.metadata.name: required")
        assignments = {}
        for j, a in enumerate((item.get("spec") or {}).get("parameterAssignments") or []):
            if not isinstance(a, dict) or not isinstance(a.get("name"), str) or "value" not in a:
                raise UserError(f"{where}.spec.parameterAssignments[{j}]: expected {{name: string, value: string}}")
            assignments[a["name"]] = str(a["value"])
        status = item.get("status") or {}
        true = [
            str(c.get("type"))
            for c in status.get("conditions") or []
            if isinstance(c, dict) and c.get("status") == "True"
        ]
        metrics = (status.get("observation") or {}).get("metrics")
        if metrics is not None and not isinstance(metrics, list):
            raise UserError(f"{where}.status.observation.metrics: expected a list of {{name, min, max, latest}}")
        observed = next((m for m in metrics or [] if isinstance(m, dict) and m.get("name") == metric), None)
        objective = str(observed.get(STRATEGY_FIELDS.get(strategy, "latest"), UNAVAILABLE)) if observed else UNAVAILABLE
        trials.append(
            TrialOutcome(
                name=name,
                state=true[-1] if true else "",
                objective=objective,
                observation=metrics,
                assignments=assignments,
            )
        )
    return trials
