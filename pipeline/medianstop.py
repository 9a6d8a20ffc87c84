"""Katib's `medianstop` early stopping, rule and check, exactly as Katib runs it.

The rule (the early-stopping service): once `min_trials_required` trials have
succeeded, average each one's first `start_step` objective reports; the
threshold is the MEAN of those averages (not a median, despite the name). The
rule is fixed when a trial is created.

The check (the metrics collector sidecar): keep the trial's best-so-far
objective; at its `start_step`-th report - once, never again - compare it with
the threshold: worse (less when maximizing, greater when minimizing) stops it.
Optuna's MedianPruner is a different rule (per-step median, every step).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pipeline.errors import UserError

DEFAULT_MIN_TRIALS_REQUIRED = 3
DEFAULT_START_STEP = 4


@dataclass(frozen=True)
class MedianStopSettings:
    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED
    start_step: int = DEFAULT_START_STEP

    @classmethod
    def from_experiment(cls, exp: dict[str, Any]) -> "MedianStopSettings | None":
        es = exp["spec"].get("earlyStopping")
        if not es:
            return None
        name = es.get("algorithmName")
        if name != "medianstop":
            raise UserError(f"spec.earlyStopping.algorithmName: {name!r} is not supported (supported: medianstop)")
        values = {"min_trials_required": DEFAULT_MIN_TRIALS_REQUIRED, "start_step": DEFAULT_START_STEP}
        for s in es.get("algorithmSettings") or []:
            if s.get("name") not in values:
                raise UserError(f"spec.earlyStopping.algorithmSettings: unknown setting {s.get('name')} "
                                "for algorithm medianstop")
            try:
                values[s["name"]] = int(s.get("value"))
            except (TypeError, ValueError):
                raise UserError(f"spec.earlyStopping.algorithmSettings: {s['name']}: "
                                f"{s.get('value')!r} is not an integer") from None
        if values["min_trials_required"] <= 0:
            raise UserError("spec.earlyStopping.algorithmSettings: min_trials_required must be greater than zero (>0)")
        if values["start_step"] < 1:
            raise UserError("spec.earlyStopping.algorithmSettings: start_step must be greater or equal than one (>=1)")
        return cls(**values)


def threshold(succeeded_reports: Iterable[Sequence[float]], settings: MedianStopSettings) -> float | None:
    """The stop value for a new trial, from the objective reports (in order) of
    the succeeded trials; None (no rule) until enough trials have succeeded."""
    averages = []
    for reports in succeeded_reports:
        first = list(reports)[: settings.start_step]
        if first:
            averages.append(sum(first) / len(first))
    if len(averages) < settings.min_trials_required or not averages:
        return None
    return sum(averages) / len(averages)


class StopCheck:
    """The collector's check for one running trial. Feed objective values in
    report order; `report` returns True when the trial must be stopped."""

    def __init__(self, value: float, maximize: bool, start_step: int):
        self.value = value
        self.maximize = maximize
        self.remaining = start_step
        self.best: float | None = None
        self.done = False

    def report(self, metric_value: float) -> bool:
        if self.done:
            return False
        if self.best is None or (metric_value > self.best if self.maximize else metric_value < self.best):
            self.best = metric_value
        self.remaining -= 1
        if self.remaining != 0:
            return False
        self.done = True  # compared once, at the start_step-th report
        return self.best < self.value if self.maximize else self.best > self.value
