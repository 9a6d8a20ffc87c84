"""bench.sections.asha end to end on the sample (its own file, so pytest-xdist's loadfile runs it beside the
other bench tests)."""

from __future__ import annotations

import pytest

from bench.sections import asha
from bench.tuning import trial_reports, trial_rows
from tests.conftest import SAMPLE


@pytest.mark.process
@pytest.mark.slow
def test_asha_section_records_replays_and_runs_asha_for_real(tmp_path):
    run = dict(data=SAMPLE, trials=4, rows=300, out=tmp_path, random_state=3, orders=6, run_trials=3)
    result = asha.measure(**run)
    # Plain random search recorded each configuration to asha.yaml's max_resource (its rungs 1, 3, 9).
    assert result["rungs"] == [1, 3, 9] and result["configurations"] == 4
    assert [len(r) for r in trial_reports(tmp_path / "asha-random")] == [9] * 4
    assert result["epochs_total"]["random"] == 36
    # ASHA spends at least each configuration's first rung and never more than training all of them fully.
    assert 4 <= result["epochs_total"]["asha"]["min"] <= result["epochs_total"]["asha"]["max"] <= 36
    # The target is plain random search's best less the margin, so plain random search meets it in every order.
    assert 1 <= result["random"]["min"] <= result["random"]["max"] <= 36
    assert result["best_val_accuracy"]["asha"]["max"] <= result["best_val_accuracy"]["random"]
    # The real run: experiments/asha.yaml's own proposals, 3 trials.
    assert len(trial_rows(tmp_path / "asha-run")) == 3
    assert result["real_asha_run"]["epochs_total"] >= 3

    logs = sorted(tmp_path.glob("asha-*/trials/*/trial.log"))
    stamps = [p.stat().st_mtime_ns for p in logs]
    again = asha.measure(**run, resume=True)
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("asha-*/trials/*/trial.log"))] == stamps
    # Resumed: nothing trains again, and the replay of the same recorded curves gives the same figures.
    timed = {"record_wall_s", "resumed", "real_asha_run"}
    assert {k: v for k, v in again.items() if k not in timed} == {k: v for k, v in result.items() if k not in timed}
    assert again["resumed"] and again["real_asha_run"]["epochs_total"] == result["real_asha_run"]["epochs_total"]
