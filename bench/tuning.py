"""Dry-run Experiments (the local controller, as `katib-digits tune` runs them) and what their trials recorded:
trials.csv in completion order, each trial's metric reports, the epochs spent until a target."""

from __future__ import annotations

import time
from pathlib import Path

from bench.paths import REPO
from trial.metrics import parse_line


def tune(
    experiment: str,
    data: Path,
    out: Path,
    trials: int,
    parallel: int,
    trial_args: list[str],
    random_state: str | None = None,
) -> tuple[dict, float]:
    """experiments/`experiment` run locally in `out` for `trials` trials (`parallel` at a time) with
    `trial_args` added to each; `random_state` replaces the algorithm's. The result and its wall seconds."""
    from pipeline.katib.experiment import load_experiment
    from pipeline.local.controller import run_experiment

    exp = load_experiment(REPO / "experiments" / experiment)
    if random_state is not None:  # same seed, same proposals: the runs differ only in early stopping
        settings = [s for s in exp["spec"]["algorithm"].get("algorithmSettings") or [] if s["name"] != "random_state"]
        exp["spec"]["algorithm"]["algorithmSettings"] = [*settings, {"name": "random_state", "value": random_state}]
    t0 = time.perf_counter()
    result = run_experiment(
        exp,
        out,
        {"/data": str(data)},
        max_trial_count=trials,
        parallel_trial_count=parallel,
        trial_args=trial_args,
        progress=False,
    )
    return result, time.perf_counter() - t0


def trial_rows(out: Path) -> list[dict]:
    """The rows of `out`/trials.csv in completion order (unfinished trials last)."""
    import csv

    with (out / "trials.csv").open() as fh:
        return sorted(csv.DictReader(fh), key=lambda r: r["end"] or "~")


def trial_reports(out: Path) -> list[list[dict]]:
    """Each trial's metric reports, trials in completion order."""
    trials = []
    for row in trial_rows(out):
        log = out / "trials" / row["name"] / "trial.log"
        trials.append(
            [parse_line(line) for line in log.read_text().splitlines() if line.startswith("epoch=")]
            if log.exists()
            else []
        )
    return trials


def epochs_to_target(out: Path, target: float) -> tuple[int | None, int]:
    """Epochs spent (trials in completion order) until a report reaches `target`, and epochs in all."""
    spent, reached = 0, None
    for reports in trial_reports(out):
        for report in reports:
            spent += 1
            if reached is None and report.get("val_accuracy", 0) >= target:
                reached = spent
    return reached, spent


# A target of "best": the best val_accuracy plain random search reaches in its budget, less this margin
# (about 1.5 validation images at 3,000 rows), because CPU training is not bit-for-bit repeatable.
BEST_MARGIN = 0.005
