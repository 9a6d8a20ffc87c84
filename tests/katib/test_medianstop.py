"""medianstop: Katib's rule (mean of the first start_step averages) and check (once, at start_step)."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import MedianStopSettings, StopCheck, threshold


def test_threshold_is_mean_of_first_averages():
    s = MedianStopSettings(min_trials_required=2, start_step=2)
    # averages of the first two reports: 0.2, 0.6, 0.7 -> mean 0.5 (the median would be 0.6)
    assert threshold([[0.1, 0.3, 0.9], [0.5, 0.7], [0.7]], s) == pytest.approx(0.5)


def test_no_rule_before_min_trials():
    assert threshold([[0.1, 0.2]], MedianStopSettings(min_trials_required=2, start_step=1)) is None


def test_check_happens_once_at_start_step_with_best_so_far():
    check = StopCheck(0.5, maximize=True, start_step=3)
    assert [check.report(v) for v in (0.1, 0.6, 0.2)] == [False, False, False]  # best 0.6 >= 0.5
    assert check.report(0.0) is False  # never checked again
    stop = StopCheck(0.5, maximize=True, start_step=2)
    assert [stop.report(v) for v in (0.1, 0.4)] == [False, True]


def test_minimize_stops_when_greater():
    assert [StopCheck(1.0, maximize=False, start_step=1).report(1.5)] == [True]
    assert StopCheck(1.0, maximize=False, start_step=1).report(0.5) is False


def scripted(trials, settings, maximize=True):
    """Run a sequence of trials (each a list of reports) through rule + check, as the dry-run does."""
    succeeded: list[list[float]] = []
    states = []
    for reports in trials:
        rule = threshold(succeeded, settings)
        check = StopCheck(rule, maximize, settings.start_step) if rule is not None else None
        stopped = False
        seen = []
        for v in reports:
            seen.append(v)
            if check and check.report(v):
                stopped = True
                break
        states.append("EarlyStopped" if stopped else "Succeeded")
        if not stopped:
            succeeded.append(seen)
    return states


def test_scripted_sequence_matches_the_rule():
    s = MedianStopSettings(min_trials_required=2, start_step=2)
    trials = [[0.5, 0.6, 0.7], [0.7, 0.8], [0.1, 0.2, 0.9], [0.9, 0.95], [0.3, 0.61], [0.3, 0.64]]
    # rule after 2 successes: mean(0.55, 0.75) = 0.65; trial 3 best at step 2 = 0.2 -> stopped
    # trial 4 best 0.95 -> succeeds; rule then mean(0.55, 0.75, 0.925) = 0.741.. ; trial 5 best 0.61 -> stopped
    assert scripted(trials, s) == [
        "Succeeded",
        "Succeeded",
        "EarlyStopped",
        "Succeeded",
        "EarlyStopped",
        "EarlyStopped",
    ]


@pytest.mark.parametrize(
    "settings,message",
    [
        ([{"name": "min_trials_required", "value": "0"}], "greater than zero"),
        ([{"name": "start_step", "value": "0"}], "greater or equal than one"),
        ([{"name": "patience", "value": "1"}], "unknown setting .patience."),
        ([{"name": "start_step", "value": "x"}], "not an integer"),
    ],
)
def test_settings_validation(settings, message):
    exp = {"spec": {"earlyStopping": {"algorithmName": "medianstop", "algorithmSettings": settings}}}
    with pytest.raises(UserError, match=message):
        MedianStopSettings.from_experiment(Experiment(exp))


def test_defaults():
    exp = {"spec": {"earlyStopping": {"algorithmName": "medianstop"}}}
    assert MedianStopSettings.from_experiment(Experiment(exp)) == MedianStopSettings(3, 4)
    assert MedianStopSettings.from_experiment(Experiment({"spec": {}})) is None


def test_push_collector_gets_no_early_stopping():
    """With the Push collector Katib injects no sidecar, so no early-stopping rule applies."""
    from pipeline.katib.experiment import Experiment
    from pipeline.katib.medianstop import MedianStopSettings
    from pipeline.lint import lint_experiment
    from tests.fake_trial import experiment

    exp = experiment(early_stopping={"algorithmName": "medianstop"}, collector={"collector": {"kind": "Push"}})
    assert MedianStopSettings.from_experiment(Experiment(exp)) is None
    assert any(
        p.path == "spec.earlyStopping" and "never applied with the Push collector" in p.message
        for p in lint_experiment(exp)
    )
    exp["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "StdOut"}}
    assert MedianStopSettings.from_experiment(Experiment(exp)) is not None
