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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import UserError
from pipeline.katib.algorithms import Setting, py_int

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.katib.experiment import Experiment

DEFAULT_MIN_TRIALS_REQUIRED = 3
DEFAULT_START_STEP = 4
# The early-stopping service's settings (`ValidateEarlyStoppingSettings`), the one copy of its rules.
SETTINGS = {
    "min_trials_required": Setting(
        py_int,
        lambda v: v > 0,
        lambda name, text, value, _: (
            f"failed to validate {name}({text}): not an integer"
            if value is None
            else f"min_trials_required must be greater than zero (>0), found {text!r}"
        ),
        DEFAULT_MIN_TRIALS_REQUIRED,
    ),
    "start_step": Setting(
        py_int,
        lambda v: v >= 1,
        lambda name, text, value, _: (
            f"failed to validate {name}({text}): not an integer"
            if value is None
            else f"start_step must be greater or equal than one (>=1), found {text!r}"
        ),
        DEFAULT_START_STEP,
    ),
}
ALGORITHM = "medianstop"


# The collectors whose sidecar the pod webhook injects and which carries the early-stopping
# rules (`-stop-rule`); with Push the trial reports its metrics itself and nothing stops it.
SIDECAR_COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom")


@dataclass(frozen=True)
class MedianStopSettings:
    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED
    start_step: int = DEFAULT_START_STEP

    @classmethod
    def from_experiment(cls, exp: Experiment) -> MedianStopSettings | None:
        """The Experiment's medianstop settings, None without early stopping; a value the
        linter rejects raises UserError (for callers that did not lint)."""
        name = exp.early_stopping_name
        if not name:
            return None
        if exp.collector_kind not in SIDECAR_COLLECTORS:
            return None  # no metrics-collector sidecar (Push): Katib applies no early-stopping rule
        if name != ALGORITHM:
            raise UserError(f"spec.earlyStopping.algorithmName: {name!r} is not supported (supported: medianstop)")
        values = {key: rule.default for key, rule in SETTINGS.items()}
        for key, text in exp.early_stopping_settings.items():
            rule = SETTINGS.get(key)
            if rule is None:
                raise UserError(
                    f"spec.earlyStopping.algorithmSettings: unknown setting {key!r} for algorithm "
                    f"medianstop ({', '.join(SETTINGS)})"
                )
            problem = rule.check(key, text, ALGORITHM)
            if problem:
                raise UserError(f"spec.earlyStopping.algorithmSettings: {problem}")
            values[key] = rule.parse(text)
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
        self.start_step_total = start_step
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
