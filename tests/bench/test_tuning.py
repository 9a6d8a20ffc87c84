"""bench.tuning: reading what a dry-run's trials recorded (trials.csv, each trial.log)."""

from __future__ import annotations

from pathlib import Path

from bench.tuning import epochs_to_target, trial_reports, trial_rows


def write_trials(folder: Path, trials: dict[str, list[float]], ends: list[str] | None = None) -> None:
    """trials.csv (end times in dict order unless `ends` says otherwise) and one trial.log per trial with its
    val_accuracy per epoch."""
    lines = ["name,end"]
    for i, (name, vals) in enumerate(trials.items()):
        lines.append(f"{name},{ends[i] if ends else f'2026-11-23T10:00:0{i}'}")
        log = folder / "trials" / name / "trial.log"
        log.parent.mkdir(parents=True)
        log.write_text("".join(f"epoch={e} val_accuracy={v}\n" for e, v in enumerate(vals, 1)) + "trial: done\n")
    (folder / "trials.csv").write_text("\n".join(lines) + "\n")


def test_epochs_to_target_counts_every_epoch_before_the_first_hit(tmp_path):
    write_trials(tmp_path, {"a": [0.5, 0.6, 0.7], "b": [0.8, 0.91], "c": [0.95, 0.99]})
    assert epochs_to_target(tmp_path, 0.9) == (5, 7)
    assert epochs_to_target(tmp_path, 0.995) == (None, 7)


def test_trials_are_read_in_completion_order_unfinished_last(tmp_path):
    write_trials(
        tmp_path, {"a": [0.5], "b": [0.8, 0.9], "c": [0.7]}, ends=["2026-11-23T10:00:09", "", "2026-11-23T10:00:01"]
    )
    assert [r["name"] for r in trial_rows(tmp_path)] == ["c", "a", "b"]
    # only the metric lines count, parsed as the collector parses them
    assert trial_reports(tmp_path) == [
        [{"epoch": 1, "val_accuracy": 0.7}],
        [{"epoch": 1, "val_accuracy": 0.5}],
        [{"epoch": 1, "val_accuracy": 0.8}, {"epoch": 2, "val_accuracy": 0.9}],
    ]
