"""Katib's experiment-controller counts (the end conditions and the optimal trial are checked against
Katib's own code in tests/oracle/test_status.py)."""

from __future__ import annotations

from pipeline.katib.status import TrialOutcome, early_stop_stall, trials_to_add


def test_metrics_unavailable_trials_do_not_count_for_new_trials():
    """Katib's ReconcileTrials leaves MetricsUnavailable trials out of `completed`, so it asks
    for a replacement the end condition (which counts them) does not need: more than maxTrialCount."""
    assert trials_to_add([TrialOutcome("a", "MetricsUnavailable")], max_trials=2, parallel=2, running=1) == 1
    assert trials_to_add([TrialOutcome("a", "Succeeded")], max_trials=2, parallel=2, running=1) == 0


def test_free_slots_capped_by_the_budget():
    done = [
        TrialOutcome(n, s)
        for n, s in (("a", "Succeeded"), ("b", "Failed"), ("c", "Killed"), ("d", "Killed"), ("e", "Running"))
    ]
    assert trials_to_add(done, max_trials=None, parallel=3, running=1) == 2
    assert trials_to_add(done, max_trials=6, parallel=3, running=1) == 1
    assert trials_to_add(done, max_trials=4, parallel=3, running=1) == 0  # never negative


def test_each_early_stopped_trial_holds_a_slot_for_good():
    """Katib v0.19 asks for no trial while an early-stopped one lacks its observation, which it never gets
    (ReconcileSuggestions' incompleteEarlyStoppingCount; kubeflow/katib#1377): one slot less for each."""
    stopped = [TrialOutcome("a", "Succeeded"), TrialOutcome("b", "EarlyStopped")]
    assert trials_to_add(stopped, max_trials=None, parallel=3, running=0) == 2
    assert trials_to_add(stopped, max_trials=10, parallel=3, running=1) == 1
    assert early_stop_stall(stopped, parallel=2) is None
    assert trials_to_add(stopped, max_trials=10, parallel=1, running=0) == 0
    assert "1 early-stopped trial(s) hold all 1 parallel slot(s)" in (early_stop_stall(stopped, parallel=1) or "")
