"""A stand-in for Katib v0.19's suggestion controller (suggestionclient.go): it builds the
requests the controller builds, from an Experiment YAML and a list of trials, and checks
replies the way it does. The tests play the controller with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kubeflow.katib import katib_api_pb2 as api

from pipeline.katib.experiment import load_experiment
from tests.conftest import REPO

TIMEOUT_S = 60  # suggestionclient.go: every call has a 60 s deadline
TYPES = {"double": api.DOUBLE, "int": api.INT, "discrete": api.DISCRETE, "categorical": api.CATEGORICAL}
DISTRIBUTIONS = {
    "uniform": api.UNIFORM,
    "logUniform": api.LOG_UNIFORM,
    "normal": api.NORMAL,
    "logNormal": api.LOG_NORMAL,
}
CONDITIONS = {
    "Created": api.TrialStatus.CREATED,
    "Running": api.TrialStatus.RUNNING,
    "Succeeded": api.TrialStatus.SUCCEEDED,
    "Killed": api.TrialStatus.KILLED,
    "Failed": api.TrialStatus.FAILED,
    "EarlyStopped": api.TrialStatus.EARLYSTOPPED,
    "MetricsUnavailable": api.TrialStatus.METRICSUNAVAILABLE,
}


def asha_experiment(**settings: str | None) -> dict:
    """experiments/asha.yaml, with `settings` replacing or adding algorithm settings (None removes one)."""
    exp = load_experiment(REPO / "experiments" / "asha.yaml")
    current: dict[str, str | None] = {s["name"]: s["value"] for s in exp["spec"]["algorithm"]["algorithmSettings"]}
    current.update(settings)
    exp["spec"]["algorithm"]["algorithmSettings"] = [
        {"name": k, "value": v} for k, v in current.items() if v is not None
    ]
    return exp


def convert_experiment(exp: dict, extra_settings: Sequence[api.AlgorithmSetting] = ()) -> api.Experiment:
    """ConvertExperiment (plus appendAlgorithmSettingsFromSuggestion's settings from the Suggestion status)."""
    spec = exp["spec"]
    settings = {s["name"]: s["value"] for s in spec["algorithm"].get("algorithmSettings") or []}
    for s in extra_settings:
        settings[s.name] = s.value
    params = []
    for p in spec["parameters"]:
        fs = p["feasibleSpace"]
        params.append(
            api.ParameterSpec(
                name=p["name"],
                parameter_type=TYPES[p["parameterType"]],
                feasible_space=api.FeasibleSpace(
                    min=fs.get("min", ""),
                    max=fs.get("max", ""),
                    step=fs.get("step", ""),
                    list=fs.get("list", []),
                    distribution=DISTRIBUTIONS.get(fs.get("distribution"), 0),
                ),
            )
        )
    objective = spec["objective"]
    return api.Experiment(
        name=exp["metadata"]["name"],
        spec=api.ExperimentSpec(
            algorithm=api.AlgorithmSpec(
                algorithm_name=spec["algorithm"]["algorithmName"],
                algorithm_settings=[api.AlgorithmSetting(name=k, value=v) for k, v in settings.items()],
            ),
            objective=api.ObjectiveSpec(
                type=api.MAXIMIZE if objective["type"] == "maximize" else api.MINIMIZE,
                objective_metric_name=objective["objectiveMetricName"],
                additional_metric_names=objective.get("additionalMetricNames", []),
            ),
            parameter_specs=api.ExperimentSpec.ParameterSpecs(parameters=params),
            parallel_trial_count=spec.get("parallelTrialCount", 3),
            max_trial_count=spec.get("maxTrialCount", 0),
        ),
    )


@dataclass
class FakeTrial:
    """A trial as Katib keeps it: assignments, the latest condition, and the objective's summary value."""

    name: str
    assignments: dict[str, str]
    condition: str = "Running"
    value: str | None = None  # the objective's observation by metricStrategy (min/max/latest)
    metric: str = "val_accuracy"

    def sent(self) -> bool:
        """ConvertTrials skips MetricsUnavailable trials and early-stopped ones without observation."""
        return self.condition != "MetricsUnavailable" and not (self.condition == "EarlyStopped" and self.value is None)

    def to_proto(self) -> api.Trial:
        metrics = [api.Metric(name=self.metric, value=self.value)] if self.value is not None else []
        return api.Trial(
            name=self.name,
            spec=api.TrialSpec(
                parameter_assignments=api.TrialSpec.ParameterAssignments(
                    assignments=[api.ParameterAssignment(name=k, value=v) for k, v in self.assignments.items()]
                )
            ),
            status=api.TrialStatus(condition=CONDITIONS[self.condition], observation=api.Observation(metrics=metrics)),
        )


@dataclass
class Controller:
    """The Suggestion's bookkeeping: Spec.Requests, Status.Suggestions and Status.AlgorithmSettings."""

    exp: dict
    trials: list[FakeTrial] = field(default_factory=list)
    suggestion_count: int = 0
    algorithm_settings: list[api.AlgorithmSetting] = field(default_factory=list)

    def request(self, want: int) -> api.GetSuggestionsRequest:
        """SyncAssignments' request when the experiment controller asks for `want` more trials."""
        requests = self.suggestion_count + want
        return api.GetSuggestionsRequest(
            experiment=convert_experiment(self.exp, self.algorithm_settings),
            trials=[t.to_proto() for t in self.trials if t.sent()],
            current_request_number=requests - self.suggestion_count,
            total_request_number=requests,
        )

    def accept(self, request: api.GetSuggestionsRequest, reply: api.GetSuggestionsReply) -> list[FakeTrial]:
        """What the controller does with a reply: the exact-count rule, then new trials (Running) and the
        algorithm settings kept for the next request (updateAlgorithmSettings)."""
        if len(reply.parameter_assignments) != request.current_request_number:
            raise AssertionError("The response contains unexpected trials")
        new = []
        for pa in reply.parameter_assignments:
            self.suggestion_count += 1
            new.append(
                FakeTrial(
                    f"{self.exp['metadata']['name']}-{self.suggestion_count:08d}",
                    {a.name: a.value for a in pa.assignments},
                )
            )
        if reply.HasField("algorithm"):
            kept = {s.name: s for s in self.algorithm_settings}
            for s in reply.algorithm.algorithm_settings:
                kept[s.name] = api.AlgorithmSetting(name=s.name, value=s.value)
            self.algorithm_settings = list(kept.values())
        self.trials.extend(new)
        return new
