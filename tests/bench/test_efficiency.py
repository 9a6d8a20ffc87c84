"""bench.sections.efficiency end to end on the sample (its own file, so pytest-xdist's loadfile runs it
beside the accuracy tests, not after them)."""

from __future__ import annotations

import pytest

from bench.sections import efficiency
from bench.tuning import trial_rows
from tests.conftest import SAMPLE


@pytest.mark.process
@pytest.mark.slow
def test_efficiency_section_runs_the_three_searches_and_resumes_without_training(tmp_path):
    # hyperband: 3 trials of its first rung (the real bench runs its 13-trial bracket; 9 processes at once
    # on a 2-core machine would take this test minutes).
    run = dict(data=SAMPLE, trials=5, rows=300, epochs=2, target=None, out=tmp_path, random_state=3, hyperband_trials=3)
    result = efficiency.measure(**run)
    for name, trials in (("random", 5), ("medianstop", 5), ("hyperband", 3)):
        assert len(trial_rows(tmp_path / f"efficiency-{name}")) == trials
    assert result["random"]["epochs_total"] == 10 and result["random"]["epochs_to_target"]
    # The replay in random search's own order spends what the real medianstop run (same proposals) spent.
    assert result["over_orders"]["own_order_replayed_epochs_total"] == result["medianstop"]["epochs_total"]
    assert len(result["medianstop_settings_sweep"]) == 9

    logs = sorted(tmp_path.glob("efficiency-*/trials/*/trial.log"))
    stamps = [p.stat().st_mtime_ns for p in logs]
    again = efficiency.measure(**run, resume=True)
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("efficiency-*/trials/*/trial.log"))] == stamps
    assert again["resumed"] and not result["resumed"]
    for name in ("random", "medianstop", "hyperband"):
        assert {k: again[name][k] for k in ("epochs_to_target", "epochs_total")} == {
            k: result[name][k] for k in ("epochs_to_target", "epochs_total")
        }
    assert again["over_orders"] == result["over_orders"]
