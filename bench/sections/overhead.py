"""overhead: what the dry-run adds per trial, against the trials' own durations and the same commands run
by hand."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.process import run_trial
from bench.tuning import trial_rows, tune

ABOUT = "dry-run overhead per trial (N one-epoch trials via `katib-digits tune`)"


def measure(data: Path, trials: int, rows: int, out: Path) -> dict:
    """Dry-run wall time vs the trials' own durations vs the same commands run by hand, one at a time."""
    from pipeline.katib.experiment import Experiment
    from pipeline.katib.render import trial_argv

    trial_args = ["--epochs=1", f"--max-rows={rows}"]
    shutil.rmtree(out / "overhead", ignore_errors=True)
    run_trial(["--data", str(data / "train.csv.gz"), "--epochs", "1", "--max-rows", "64"])  # warm the CSV cache
    result, wall = tune("random.yaml", data, out / "overhead", trials, 1, trial_args)
    own = sum(float(r["duration_s"]) for r in trial_rows(out / "overhead"))
    spec = result["spec"]
    t0 = time.perf_counter()
    for row in trial_rows(out / "overhead"):
        assignments = {p["name"]: row[p["name"]] for p in spec["parameters"]}
        argv = trial_argv(Experiment(result), assignments)
        argv = [a.replace("/data/", f"{data}/") for a in argv[3:]] + trial_args  # drop `python -m trial`
        run_trial(argv)
    by_hand = time.perf_counter() - t0
    return {
        "trials": trials,
        "rows_per_trial": rows,
        "dry_run_wall_s": round(wall, 1),
        "sum_trial_durations_s": round(own, 1),
        "by_hand_wall_s": round(by_hand, 1),
        "overhead_vs_trial_durations": round(wall / own - 1, 3),
        "overhead_vs_by_hand": round(wall / by_hand - 1, 3),
    }


def add_arguments(group) -> None:
    group.add_argument("--overhead-trials", type=int, default=3)
    group.add_argument("--overhead-rows", type=int, default=0, help="rows per overhead trial (0 = all 42,000)")


def run(args, report: dict) -> dict:
    return measure(args.data, args.overhead_trials, args.overhead_rows, args.out)
