"""Katib's trial controller rules: a finished trial's condition, reason, message and observation from
how its Job ended and what the collector read; the Job's backoff and deadline."""

from __future__ import annotations

import pytest

from pipeline.katib import collector as mc
from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import StopCheck
from pipeline.katib.trial_rules import DEFAULT_BACKOFF_LIMIT, JobLimits, TrialEnd, judge, objective_reports
from tests.fake_trial import experiment

STDOUT = mc.CollectorSpec(
    objective="accuracy", metric_names=["accuracy", "loss"], strategies={"accuracy": "max", "loss": "min"}
)
FILE_JSON = mc.CollectorSpec(
    objective="accuracy",
    metric_names=["accuracy", "loss"],
    strategies={"accuracy": "max", "loss": "min"},
    kind="File",
    file_format="JSON",
    path="/katib/metrics.json",
)
LOG = "epoch=1 accuracy=0.5 loss=0.9\nepoch=2 accuracy=0.7 loss=0.4\nepoch=3 accuracy=0.6 loss=0.5\n"


def test_succeeded_keeps_katibs_observation():
    v = judge(STDOUT, LOG, TrialEnd(returncode=0))
    # Katib adds the Job's Complete condition (Kubernetes 1.31+), as the box shows (tests/box/test_differential.py)
    assert (v.state, v.reason, v.message) == (
        "Succeeded",
        "TrialSucceeded. Job reason: CompletionsReached",
        "Trial has succeeded. Job message: Reached expected number of succeeded pods",
    )
    other_kind = judge(STDOUT, LOG, TrialEnd(returncode=0), JobLimits(batch_job=False))
    assert (other_kind.reason, other_kind.message) == ("TrialSucceeded", "Trial has succeeded")
    assert v.observed and v.objective == "0.7" and v.value == 0.7
    assert v.observation == [
        {"name": "accuracy", "min": "0.5", "max": "0.7", "latest": "0.6"},
        {"name": "loss", "min": "0.4", "max": "0.9", "latest": "0.5"},
    ]
    assert v.reports == [0.5, 0.7, 0.6]


@pytest.mark.parametrize(
    "end,state,reason,message",
    [
        (
            TrialEnd(returncode=1, attempts=3),
            "Failed",
            "TrialFailed. Job reason: BackoffLimitExceeded",
            "Trial has failed. Job message: Job has reached the specified backoff limit "
            "(exit code 1 after 3 attempt(s))",
        ),
        (
            TrialEnd(returncode=-15, timed_out=True),
            "Failed",
            "TrialFailed. Job reason: DeadlineExceeded",
            "Trial has failed. Job message: Job was active longer than specified deadline (30s activeDeadlineSeconds)",
        ),
        (
            TrialEnd(returncode=-15, killed=True),
            "Killed",
            "TrialKilled",
            "the experiment ended while the trial was running",
        ),
    ],
)
def test_failed_and_killed_trials_have_no_observation(end, state, reason, message):
    v = judge(STDOUT, LOG, end, JobLimits(deadline_s=30))
    assert (v.state, v.reason, v.message) == (state, reason, message)
    assert not v.observed and v.observation is None and v.objective == mc.UNAVAILABLE and v.value is None
    assert v.reports == [0.5, 0.7, 0.6]  # the collector still read them (medianstop does not use them)


def test_early_stopped_names_its_rule_and_has_no_observation_as_on_katib():
    v = judge(STDOUT, LOG, TrialEnd(returncode=-15, early_stopped=True), stop=StopCheck(0.85, True, 2))
    assert (v.state, v.reason) == ("EarlyStopped", "TrialEarlyStopped")
    assert v.message == "objective accuracy best-so-far is worse than the median-stop rule 0.85 at report 2"
    # Katib v0.19 never reads an early-stopped trial's observation (kubeflow/katib#1377; the box shows it)
    assert not v.observed and v.observation is None and v.objective == "unavailable" and v.value is None


def test_conditions_follow_katibs_order():
    """Early stopping wins over a kill, a kill over the deadline, the deadline over the exit code."""
    assert judge(STDOUT, LOG, TrialEnd(1, early_stopped=True, killed=True, timed_out=True)).state == "EarlyStopped"
    assert judge(STDOUT, LOG, TrialEnd(1, killed=True, timed_out=True)).state == "Killed"
    assert judge(STDOUT, LOG, TrialEnd(1, timed_out=True)).reason.endswith("DeadlineExceeded")


@pytest.mark.parametrize(
    "spec,text,where",
    [
        (STDOUT, "acc=0.9\n", "the trial's output (default filter)"),
        (
            mc.CollectorSpec("accuracy", ["accuracy"], {"accuracy": "max"}, filters=(r"(acc)=(\d+\.\d+)",)),
            "accuracy 0.9\n",
            "the trial's output (filters ['(acc)=(\\\\d+\\\\.\\\\d+)'])",
        ),
        (FILE_JSON, "", "the trial's metrics file (default filter)"),
    ],
)
def test_exit_zero_without_the_objective_is_metrics_unavailable(spec, text, where):
    v = judge(spec, text, TrialEnd(returncode=0))
    assert (v.state, v.reason) == ("MetricsUnavailable", "MetricsUnavailable. Job reason: CompletionsReached")
    assert v.message == f"Metrics are not available: the objective metric 'accuracy' never appeared in {where}"
    assert not v.observed and v.reports == []
    # Katib reads the observation of a Job that succeeded: every metric "unavailable", as the box shows
    assert v.observation == [
        {"name": n, "min": "unavailable", "max": "unavailable", "latest": "unavailable"} for n in spec.metric_names
    ]
    assert v.objective == "unavailable" and v.value is None


def test_a_file_the_collector_cannot_parse_observes_nothing():
    v = judge(FILE_JSON, '{"accuracy": "0.9"}\nnot json\n', TrialEnd(returncode=0))
    assert v.state == "MetricsUnavailable" and v.observation is None and v.reports == []


def test_nan_is_recorded_as_katib_does_but_is_no_number():
    """`accuracy=nan` under the default filter is the value "": Succeeded, observed, non-numeric."""
    v = judge(STDOUT, "accuracy=nan loss=0.1\n", TrialEnd(returncode=0))
    assert v.state == "Succeeded" and v.observed and v.objective == ""
    assert v.non_numeric and v.value is None
    nan = judge(
        mc.CollectorSpec("accuracy", ["accuracy"], {"accuracy": "latest"}, filters=(r"(accuracy)=(\S+)",)),
        "accuracy=NaN\n",
        TrialEnd(returncode=0),
    )
    assert nan.observed and not nan.non_numeric and nan.value is None  # Go parses NaN: a number, not rankable


def test_objective_reports_keep_numbers_in_order():
    assert objective_reports(STDOUT, "accuracy=0.2\nloss=3\naccuracy=nan\naccuracy=0.1\n") == [0.2, 0.1]


def test_job_limits_from_the_trial_template():
    assert JobLimits.from_experiment(Experiment(experiment(job_spec={"activeDeadlineSeconds": 60}))) == JobLimits(
        deadline_s=60, backoff_limit=0
    )
    exp = experiment()
    del exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["backoffLimit"]
    assert JobLimits.from_experiment(Experiment(exp)).backoff_limit == DEFAULT_BACKOFF_LIMIT == 6
    exp["spec"]["trialTemplate"]["trialSpec"]["kind"] = "TFJob"
    assert JobLimits.from_experiment(Experiment(exp)) == JobLimits(deadline_s=None, backoff_limit=0, batch_job=False)


def test_a_crashed_pod_is_replaced_until_the_backoff_limit():
    job = JobLimits(backoff_limit=2)
    assert [job.starts_another_pod(TrialEnd(returncode=1, attempts=n)) for n in (1, 2, 3)] == [True, True, False]
    assert not job.starts_another_pod(TrialEnd(returncode=0, attempts=1))
    for stopped in ({"early_stopped": True}, {"killed": True}, {"timed_out": True}):
        assert not job.starts_another_pod(TrialEnd(returncode=-15, attempts=1, **stopped))
