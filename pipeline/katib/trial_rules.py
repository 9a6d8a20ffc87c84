"""Katib's trial controller, pure: how one finished trial is judged from how its Job
ended and what its metrics collector read (`UpdateTrialStatusCondition` in
`trial_controller_util.go`, the observation from `getMetrics`), and the batch/v1
Job rules Katib relies on (`backoffLimit`, `activeDeadlineSeconds`).

Nothing here runs a process or reads a file: the caller says how the trial's last
attempt (pod) ended (`TrialEnd`) and hands over the text the collector reads (that
attempt's output, or its metrics file). The conditions, in Katib's order:

- stopped by the early-stopping rule: EarlyStopped, TrialEarlyStopped;
- stopped because the Experiment ended: Killed, TrialKilled;
- ran past activeDeadlineSeconds: Failed, Job reason DeadlineExceeded;
- exited non-zero (after the Job's retries): Failed, Job reason BackoffLimitExceeded;
- exited 0 with the objective collected: Succeeded, TrialSucceeded (a Job: Job reason CompletionsReached);
- exited 0 without it: MetricsUnavailable (counted as failed by the end condition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.katib import collector as mc
from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import StopCheck
from pipeline.katib.status import EARLY_STOPPED, FAILED, KILLED, METRICS_UNAVAILABLE, SUCCEEDED

DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes Job default: a failing pod is retried this many times


@dataclass(frozen=True)
class JobLimits:
    """The trial Job's own limits: its deadline and how often a failed pod is replaced."""

    deadline_s: Any = None  # activeDeadlineSeconds as the spec writes it; None: no deadline
    backoff_limit: int = 0  # pods started again after a failure (0 for a trial kind that is not a Job)
    batch_job: bool = True  # a batch/v1 Job: Katib adds its conditions' reason and message to the trial's

    @classmethod
    def from_experiment(cls, exp: Experiment) -> JobLimits:
        job = exp.trial_spec.get("spec") or {}
        backoff = int(job.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)) if exp.trial_spec.get("kind") == "Job" else 0
        return cls(
            deadline_s=job.get("activeDeadlineSeconds"),
            backoff_limit=backoff,
            batch_job=exp.trial_spec.get("kind") == "Job",
        )

    def starts_another_pod(self, end: TrialEnd) -> bool:
        """Whether the Job controller replaces the pod that just ended: it crashed by itself (not
        stopped by the early-stopping rule, a kill or the deadline) and backoffLimit is not reached."""
        return end.crashed and end.attempts <= self.backoff_limit


@dataclass(frozen=True)
class TrialEnd:
    """How a trial's last attempt (pod) ended."""

    returncode: int | None
    attempts: int = 1  # pods the Job ran, this one included
    early_stopped: bool = False  # the collector's early-stopping check stopped it
    killed: bool = False  # stopped from outside while it ran
    timed_out: bool = False  # the Job ran past activeDeadlineSeconds

    @property
    def crashed(self) -> bool:
        return self.returncode != 0 and not (self.early_stopped or self.killed or self.timed_out)


@dataclass(frozen=True)
class Verdict:
    """The trial controller's judgement of one finished trial."""

    state: str  # the trial's condition (pipeline.katib.status)
    reason: str
    message: str
    metrics: mc.TrialMetrics  # what the collector read (all unavailable when it could not parse)
    reports: list[float]  # the objective's numeric reports in order; empty unless it was collected
    parsed: bool = True  # False when the collector could not parse what the trial wrote: nothing reached Katib

    @property
    def observed(self) -> bool:
        """Whether the trial's observation enters Katib's status (and can be the best). Never for an
        early-stopped trial: Katib v0.19 reads a trial's observation only from a Job that has ended, or
        from a running one while the trial is not marked Running (trial_controller.go, job_util.go), and an
        early-stopped trial's Job never ends: its metrics collector waits for ever for the process it
        stopped (pns.go: the "early-stopped" mark), and with `retain: false` the Job is deleted instead
        (kubeflow/katib#1377). The box shows it (tests/box/test_differential.py)."""
        return self.state == SUCCEEDED and self.metrics.available

    @property
    def observation(self) -> list[dict[str, str]] | None:
        """The trial's status.observation: Katib reads it once the Job succeeded (trial_controller.go), so a
        MetricsUnavailable trial has one too, every metric "unavailable" (the collector's unavailable line
        through getMetrics); a failed or early-stopped trial has none."""
        recorded = self.observed or (self.state == METRICS_UNAVAILABLE and self.parsed)
        return self.metrics.observation.to_katib() if recorded else None

    @property
    def objective(self) -> str:
        """The objective as Katib stores it (a string), UNAVAILABLE when not observed."""
        return self.metrics.objective if self.observed else mc.UNAVAILABLE

    @property
    def value(self) -> float | None:
        """The objective as a number a search can rank; None when not observed, not a number, or NaN."""
        v = self.metrics.objective_float
        return v if self.observed and v is not None and not math.isnan(v) else None

    @property
    def non_numeric(self) -> bool:
        """Observed, but the objective is not a number (`accuracy=nan` under the default filter reads
        as ""): Katib records it all the same, and its best-trial rule may even pick it."""
        return self.observed and self.metrics.objective_float is None


def objective_reports(spec: mc.CollectorSpec, text: str) -> list[float]:
    """The objective's numeric values in `text`, in report order (what medianstop averages)."""
    return [
        v
        for v in (mc.go_parse_float(log.value) for log in spec.parse(text) if log.name == spec.objective)
        if v is not None
    ]


def judge(
    spec: mc.CollectorSpec, text: str, end: TrialEnd, job: JobLimits = JobLimits(), stop: StopCheck | None = None
) -> Verdict:
    """Katib's condition for a trial whose last attempt ended as `end` and whose collector read `text`.
    `stop`: the early-stopping check the trial ran under (named in an EarlyStopped message)."""
    parsed = True
    try:
        metrics = mc.collect(spec, text)
    except mc.MetricsFormatError:
        metrics, parsed = mc.collect(spec, ""), False  # the collector could not parse: nothing was observed
    reports = objective_reports(spec, text) if metrics.available else []
    if end.early_stopped:
        state, reason = EARLY_STOPPED, "TrialEarlyStopped"
        rule, at = (stop.value, stop.start_step_total) if stop is not None else (None, None)
        message = f"objective {spec.objective} best-so-far is worse than the median-stop rule {rule} at report {at}"
    elif end.killed:
        state, reason, message = KILLED, "TrialKilled", "the experiment ended while the trial was running"
    elif end.timed_out:
        state, reason = FAILED, "TrialFailed. Job reason: DeadlineExceeded"
        message = (
            f"Trial has failed. Job message: Job was active longer than specified deadline "
            f"({job.deadline_s}s activeDeadlineSeconds)"
        )
    elif end.returncode != 0:
        state, reason = FAILED, "TrialFailed. Job reason: BackoffLimitExceeded"
        message = (
            f"Trial has failed. Job message: Job has reached the specified backoff limit "
            f"(exit code {end.returncode} after {end.attempts} attempt(s))"
        )
    elif metrics.available:
        state, reason, message = SUCCEEDED, "TrialSucceeded", "Trial has succeeded"
        if job.batch_job:  # Kubernetes 1.31+ gives a Job's Complete condition this reason and message
            reason += ". Job reason: CompletionsReached"
            message += ". Job message: Reached expected number of succeeded pods"
    else:
        state, reason = METRICS_UNAVAILABLE, "MetricsUnavailable"
        if job.batch_job:  # the Job completed: Katib adds its reason here too
            reason += ". Job reason: CompletionsReached"
        message = (
            f"Metrics are not available: the objective metric {spec.objective!r} never appeared "
            f"in the trial's {'metrics file' if spec.kind == 'File' else 'output'} "
            f"({'filters ' + repr(list(spec.filters)) if spec.filters else 'default filter'})"
        )
    return Verdict(state=state, reason=reason, message=message, metrics=metrics, reports=reports, parsed=parsed)
