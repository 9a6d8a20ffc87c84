"""Katib's suggestion controller, in-process, for the suggestion services this project
ships (`asha`): the dry-run hands the same AshaService class the cluster runs the same
GetSuggestionsRequest Katib would (pipeline.suggestion.request), keeps the Suggestion's
bookkeeping (how many assignments it holds, the algorithm settings the service
round-trips) and applies the controller's rules to the reply (the exact count)."""

from __future__ import annotations

from typing import Any

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.suggestion import request as katib_request
from pipeline.suggestion.request import TrialRecord
from pipeline.suggestion.service import Aborted, AshaService, InProcess, plan_of


class ServiceDriver:
    """The Suggestion object and its controller for one Experiment."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        self.servicer = AshaService()
        self.count = 0  # Suggestion.Status.SuggestionCount
        self.settings: dict[str, str] = {}  # Suggestion.Status.AlgorithmSettings
        validate = katib_request.experiment(exp)
        try:  # Katib validates once, when it creates the Suggestion
            self.servicer.ValidateAlgorithmSettings(
                katib_request.api.ValidateAlgorithmSettingsRequest(experiment=validate), InProcess()
            )
        except Aborted as exc:
            raise UserError(f"{exp.source}: ValidateAlgorithmSettings: {exc}") from None
        self.plan, _ = plan_of(validate)

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "settings": dict(self.settings)}

    def restore(self, saved: dict[str, Any]) -> None:
        self.count, self.settings = int(saved["count"]), dict(saved["settings"])

    def suggest(self, records: list[TrialRecord], want: int) -> list[dict[str, str]]:
        """`want` assignment sets (Katib's current_request_number), as strings."""
        req = katib_request.get_suggestions(self.exp, records, self.count, want, self.settings)
        try:
            reply = self.servicer.GetSuggestions(req, InProcess())
        except Aborted as exc:
            raise UserError(f"{self.exp.source}: GetSuggestions: {exc.code.name}: {exc}") from None
        if len(reply.parameter_assignments) != want:
            raise RuntimeError(
                f"the service answered {len(reply.parameter_assignments)} assignments for {want}: "
                'Katib rejects that ("The response contains unexpected trials")'
            )
        self.count += want
        self.settings.update({s.name: s.value for s in reply.algorithm.algorithm_settings})
        return [{a.name: a.value for a in pa.assignments} for pa in reply.parameter_assignments]

    def rung(self, assignments: dict[str, str]) -> str:
        resource = assignments.get(self.plan.resource_name, "")
        rungs = [str(r) for r in self.plan.rungs]
        where = f"rung {rungs.index(resource)}" if resource in rungs else "no rung"
        return f"asha {where} ({self.plan.resource_name}={resource})"
