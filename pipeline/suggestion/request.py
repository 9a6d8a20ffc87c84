"""The GetSuggestionsRequest Katib v0.19's suggestion controller builds (suggestionclient.go:
ConvertExperiment, ConvertTrials, convertTrialObservation), for callers that stand in for
that controller: the local dry-run, which drives AshaService in-process with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeflow.katib import katib_api_pb2 as api

from pipeline.katib import status as ks
from pipeline.katib.collector import UNAVAILABLE
from pipeline.katib.experiment import Experiment

_TYPES = {"double": api.DOUBLE, "int": api.INT, "discrete": api.DISCRETE, "categorical": api.CATEGORICAL}
_DISTRIBUTIONS = {
    "uniform": api.UNIFORM,
    "logUniform": api.LOG_UNIFORM,
    "normal": api.NORMAL,
    "logNormal": api.LOG_NORMAL,
}
_CONDITIONS = {
    ks.SUCCEEDED: api.TrialStatus.SUCCEEDED,
    ks.FAILED: api.TrialStatus.FAILED,
    ks.KILLED: api.TrialStatus.KILLED,
    ks.EARLY_STOPPED: api.TrialStatus.EARLYSTOPPED,
    ks.METRICS_UNAVAILABLE: api.TrialStatus.METRICSUNAVAILABLE,
    ks.RUNNING: api.TrialStatus.RUNNING,
    ks.PENDING: api.TrialStatus.CREATED,
}


@dataclass(frozen=True)
class TrialRecord:
    """A trial as Katib stores it: its latest condition and its observation, per metric
    {name, min, max, latest} as strings (empty when it has none)."""

    name: str
    assignments: dict[str, str]
    condition: str
    metrics: list[dict[str, str]] = field(default_factory=list)


def experiment(exp: Experiment, extra_settings: dict[str, str] | None = None) -> api.Experiment:
    """ConvertExperiment of the defaulted Experiment, with the Suggestion status' settings appended
    or overriding (appendAlgorithmSettingsFromSuggestion)."""
    spec = exp.spec
    settings = dict(exp.algorithm_settings)
    settings.update(extra_settings or {})
    params = []
    for p in spec.get("parameters") or []:
        fs = p.get("feasibleSpace") or {}
        params.append(
            api.ParameterSpec(
                name=p["name"],
                parameter_type=_TYPES.get(p.get("parameterType"), 0),
                feasible_space=api.FeasibleSpace(
                    min=str(fs.get("min", "")),
                    max=str(fs.get("max", "")),
                    step=str(fs.get("step", "")),
                    list=[str(v) for v in fs.get("list") or []],
                    distribution=_DISTRIBUTIONS.get(fs.get("distribution", ""), 0),
                ),
            )
        )
    objective = exp.objective
    out = api.Experiment(
        name=exp.name,
        spec=api.ExperimentSpec(
            algorithm=api.AlgorithmSpec(
                algorithm_name=exp.algorithm_name,
                algorithm_settings=[api.AlgorithmSetting(name=k, value=str(v)) for k, v in settings.items()],
            ),
            objective=api.ObjectiveSpec(
                type=api.MAXIMIZE if objective.maximize else api.MINIMIZE,
                objective_metric_name=objective.metric,
                additional_metric_names=list(objective.additional),
            ),
            parameter_specs=api.ExperimentSpec.ParameterSpecs(parameters=params),
            parallel_trial_count=exp.parallel_trial_count,
            max_trial_count=exp.max_trial_count or 0,
        ),
    )
    if objective.goal is not None:
        out.spec.objective.goal = objective.goal
    return out


def observation(exp: Experiment, metrics: list[dict[str, Any]]) -> api.Observation:
    """convertTrialObservation: one value per metric by its metricStrategy (min/max fall back to
    latest when unavailable)."""
    out = api.Observation()
    for m in metrics:
        strategy = exp.objective.strategies.get(m["name"])
        if strategy in ("min", "max"):
            value = m.get(strategy, UNAVAILABLE)
            value = m.get("latest", "") if value == UNAVAILABLE else value
        else:
            value = m.get("latest", "") if strategy == "latest" else ""
        out.metrics.append(api.Metric(name=m["name"], value=str(value)))
    return out


def trials(exp: Experiment, records: list[TrialRecord]) -> list[api.Trial]:
    """ConvertTrials: MetricsUnavailable trials, and early-stopped ones without observation, are left out."""
    out = []
    for r in records:
        if r.condition == ks.METRICS_UNAVAILABLE or (r.condition == ks.EARLY_STOPPED and not r.metrics):
            continue
        out.append(
            api.Trial(
                name=r.name,
                spec=api.TrialSpec(
                    parameter_assignments=api.TrialSpec.ParameterAssignments(
                        assignments=[api.ParameterAssignment(name=k, value=v) for k, v in r.assignments.items()]
                    )
                ),
                status=api.TrialStatus(
                    condition=_CONDITIONS.get(r.condition, api.TrialStatus.UNKNOWN),
                    observation=observation(exp, r.metrics),
                ),
            )
        )
    return out


def get_suggestions(
    exp: Experiment,
    records: list[TrialRecord],
    suggestion_count: int,
    current: int,
    settings: dict[str, str] | None = None,
) -> api.GetSuggestionsRequest:
    """SyncAssignments' request: `suggestion_count` assignments already in the Suggestion, `current` more wanted."""
    return api.GetSuggestionsRequest(
        experiment=experiment(exp, settings),
        trials=trials(exp, records),
        current_request_number=current,
        total_request_number=suggestion_count + current,
    )
