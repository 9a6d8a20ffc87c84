"""The ASHA suggestion service: Katib's `api.v1.beta1.Suggestion` gRPC API over
`pipeline.suggestion.asha`, with the stubs the kubeflow-katib package ships.

What Katib v0.19's suggestion controller does with it (suggestionclient.go):
ValidateAlgorithmSettings once, where INVALID_ARGUMENT (or UNKNOWN) fails the
Experiment with our message; then GetSuggestions with a 60 s deadline, every
trial but MetricsUnavailable ones and early-stopped ones without observation,
`current_request_number` (what it wants now) and `total_request_number` (what
the Suggestion will hold). A reply with another count than current_request_number
is rejected and the call retried, so the reply always has exactly that many.
The reply's `algorithm` settings are stored in the Suggestion's status and sent
back with the next request: asha keeps its issued promotions there.
The same class serves on the cluster (`python -m pipeline.suggestion`) and in the
local dry-run (pipeline.local, in-process).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from kubeflow.katib import katib_api_pb2 as api, katib_api_pb2_grpc as api_grpc

from pipeline.errors import UserError
from pipeline.katib import algorithms as rules
from pipeline.katib.experiment import Param
from pipeline.suggestion import asha

ALGORITHM = "asha"
HEALTH_SERVICE = "manager.v1beta1.Suggestion"  # the service name Katib's gRPC probes ask for
log = logging.getLogger("pipeline.suggestion")

_TYPES = {api.DOUBLE: "double", api.INT: "int", api.DISCRETE: "discrete", api.CATEGORICAL: "categorical"}
_DISTRIBUTIONS = {
    api.UNIFORM: "uniform",
    api.LOG_UNIFORM: "logUniform",
    api.NORMAL: "normal",
    api.LOG_NORMAL: "logNormal",
}


class Aborted(Exception):
    """What the service answered instead of a reply: a gRPC status code and a one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class InProcess:
    """The part of grpc.ServicerContext the servicer uses, for callers in the same process (the
    local dry-run): abort raises Aborted as a real server's abort ends the call."""

    def abort(self, code: grpc.StatusCode, details: str):
        raise Aborted(code, details)


def parameters(experiment: api.Experiment) -> list[Param]:
    """The search space as the Experiment's spec.parameters, parsed by the one Param parser."""
    out = []
    for i, spec in enumerate(experiment.spec.parameter_specs.parameters):
        fs = spec.feasible_space
        space: dict[str, Any] = {"min": fs.min, "max": fs.max, "step": fs.step, "list": list(fs.list)}
        if fs.distribution in _DISTRIBUTIONS:
            space["distribution"] = _DISTRIBUTIONS[fs.distribution]
        out.append(
            Param.from_spec(
                {"name": spec.name, "parameterType": _TYPES.get(spec.parameter_type), "feasibleSpace": space},
                f"spec.parameters[{i}]",
            )
        )
    return out


def settings(experiment: api.Experiment) -> dict[str, str]:
    return {s.name: s.value for s in experiment.spec.algorithm.algorithm_settings}


def plan_of(experiment: api.Experiment) -> tuple[rules.AshaPlan, list[Param]]:
    """The checked plan; UserError naming the setting (or parameter) that is wrong."""
    name = experiment.spec.algorithm.algorithm_name
    if name != ALGORITHM:
        raise UserError(f"spec.algorithm.algorithmName: this service runs {ALGORITHM}, not {name!r}")
    params = parameters(experiment)
    return rules.asha_plan(settings(experiment), params, experiment.name), params


def trial_views(request: api.GetSuggestionsRequest) -> list[asha.TrialView]:
    objective = request.experiment.spec.objective.objective_metric_name
    out = []
    for t in request.trials:
        values = [m.value for m in t.status.observation.metrics if m.name == objective]
        out.append(
            asha.TrialView(
                name=t.name,
                assignments={a.name: a.value for a in t.spec.parameter_assignments.assignments},
                condition=api.TrialStatus.TrialConditionType.Name(t.status.condition),
                value=values[-1] if values else None,
            )
        )
    return out


class AshaService(api_grpc.SuggestionServicer):
    """GetSuggestions and ValidateAlgorithmSettings for algorithmName `asha`. Holds no state."""

    def ValidateAlgorithmSettings(self, request, context):
        try:
            params = parameters(request.experiment)
        except UserError as exc:
            return self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), "ValidateAlgorithmSettings")
        problems = rules.asha_problems(settings(request.experiment), params)
        if problems:
            message = "; ".join(f"{rules.SETTINGS_PATH}: {m}" for _, m in problems)
            return self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, message, "ValidateAlgorithmSettings")
        log.info("ValidateAlgorithmSettings %s: ok", request.experiment.name)
        return api.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        current, total = request.current_request_number, request.total_request_number
        try:
            plan, params = plan_of(request.experiment)
        except UserError as exc:
            return self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), "GetSuggestions")
        if current < 0 or total < current:
            return self._abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"current_request_number {current} must be >= 0 and <= total_request_number {total}",
                "GetSuggestions",
            )
        trials = trial_views(request)
        promoted = asha.parse_marks(settings(request.experiment).get(rules.ASHA_PROMOTED, ""))
        decisions, marks = asha.suggest(
            plan,
            params,
            request.experiment.spec.objective.type == api.MAXIMIZE,
            trials,
            current,
            total - current,
            promoted,
        )
        reply = api.GetSuggestionsReply(
            parameter_assignments=[
                api.GetSuggestionsReply.ParameterAssignments(
                    assignments=[api.ParameterAssignment(name=k, value=v) for k, v in d.assignments.items()]
                )
                for d in decisions
            ],
            algorithm=api.AlgorithmSpec(
                algorithm_name=ALGORITHM,
                algorithm_settings=[api.AlgorithmSetting(name=rules.ASHA_PROMOTED, value=asha.format_marks(marks))],
            ),
        )
        log.info(
            "GetSuggestions %s: %d trial(s) seen, %d requested (total %d): %s",
            request.experiment.name,
            len(trials),
            current,
            total,
            ", ".join(f"{d.promoted_from} -> rung {d.rung}" if d.promoted_from else "new at rung 0" for d in decisions)
            or "nothing",
        )
        return reply

    @staticmethod
    def _abort(context, code: grpc.StatusCode, message: str, call: str):
        log.error("%s: %s: %s", call, code.name, message)
        context.abort(code, message)
