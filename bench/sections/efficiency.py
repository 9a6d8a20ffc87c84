"""efficiency: epochs spent until a trial first reaches a val_accuracy target, plain random search against
random + medianstop and hyperband's first bracket, run for real; then random search's recorded trials
replayed in many orders with and without medianstop (and a sweep of its settings)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.paths import REPO
from bench.replay import replay, replay_orders
from bench.tuning import BEST_MARGIN, epochs_to_target, trial_reports, tune

ABOUT = (
    "epochs to first reach a val_accuracy target: medianstop / hyperband vs plain random (default target: "
    "the best plain random search finds, less a margin), and the mean of the same over many orders of random "
    "search's recorded trials (the luck of one order removed)"
)


REPLAY_ORDERS = 2000


HYPERBAND_FIRST_BRACKET = 10  # hyperband.yaml on Katib v0.19: 9 trials of 1 epoch, the best at 9


def measure(
    data: Path,
    trials: int,
    rows: int,
    epochs: int,
    target: float | None,
    out: Path,
    random_state: int = 7,
    resume: bool = False,
    hyperband_trials: int = HYPERBAND_FIRST_BRACKET,
) -> dict:
    """Random search without early stopping vs with medianstop (same budget and random_state, so the
    same proposals) vs hyperband's first bracket. `target` None: random search's best less BEST_MARGIN,
    i.e. how many epochs each method spends to find a model as good as the best plain random search finds."""
    result: dict[str, Any] = {
        "trials": trials,
        "rows_per_trial": rows,
        "epochs_per_trial": epochs,
        "random_state": random_state,
        "target_val_accuracy": target,
        "resumed": resume,
    }  # resumed: wall_s counts only what ran now
    for name, experiment in [
        ("random", "random.yaml"),
        ("medianstop", "random-medianstop.yaml"),
        ("hyperband", "hyperband.yaml"),
    ]:
        folder = out / f"efficiency-{name}"
        if not resume:  # with resume the dry-run keeps the finished trials in `folder` and runs only the rest
            shutil.rmtree(folder, ignore_errors=True)
        args = [f"--max-rows={rows}"] + ([] if name == "hyperband" else [f"--epochs={epochs}"])
        # hyperband: its first bracket instead of `trials` (fewer only to test the section itself).
        budget, parallel = (hyperband_trials, 9) if name == "hyperband" else (trials, 1)
        _, wall = tune(
            experiment,
            data,
            folder,
            budget,
            parallel,
            args,
            random_state=None if name == "hyperband" else str(random_state),
        )
        if result["target_val_accuracy"] is None:  # the random run comes first
            best = max((r.get("val_accuracy", 0) for reports in trial_reports(folder) for r in reports), default=0)
            result["target_val_accuracy"] = round(best - BEST_MARGIN, 4)
            result["target_rule"] = f"best val_accuracy of plain random search ({best}) - {BEST_MARGIN}"
        reached, spent = epochs_to_target(folder, result["target_val_accuracy"])
        result[name] = {"epochs_to_target": reached, "epochs_total": spent, "wall_s": round(wall, 1)}
    from pipeline.katib.experiment import load_unchecked
    from pipeline.katib.medianstop import MedianStopSettings

    settings = MedianStopSettings.from_experiment(load_unchecked(REPO / "experiments" / "random-medianstop.yaml"))
    curves = [[r.get("val_accuracy", 0) for r in reports] for reports in trial_reports(out / "efficiency-random")]
    result["over_orders"] = replay_orders(curves, result["target_val_accuracy"], settings, REPLAY_ORDERS, random_state)
    # The check on the replay: in random search's own order it must spend what the real medianstop run spent.
    # (target 2.0: no accuracy reaches it, so every epoch counts)
    result["over_orders"]["own_order_replayed_epochs_total"] = replay(curves, 2.0, settings, True)[1]
    # Would other medianstop settings do better on these trials? The same replay for each (Katib's minimums: 1).
    result["medianstop_settings_sweep"] = [
        {
            "start_step": step,
            "min_trials_required": need,
            **{
                k: v
                for k, v in replay_orders(
                    curves, result["target_val_accuracy"], MedianStopSettings(need, step), REPLAY_ORDERS, random_state
                ).items()
                if k != "orders"
            },
        }
        for step in (1, 2, 3)
        for need in (1, 2, 3)
    ]
    base = result["random"]["epochs_to_target"]
    for name in ("medianstop", "hyperband"):
        mine = result[name]["epochs_to_target"]
        result[name]["speedup_vs_random"] = round(base / mine, 2) if base and mine else None
    return result


def add_arguments(group) -> None:
    group.add_argument("--efficiency-trials", type=int, default=12)
    group.add_argument("--efficiency-rows", type=int, default=3000)
    group.add_argument(
        "--efficiency-random-state",
        type=int,
        default=7,
        help="random search's random_state, the same with and without medianstop (default 7)",
    )
    group.add_argument("--efficiency-epochs", type=int, default=8, help="epochs per trial (the Experiments' own 8)")
    group.add_argument(
        "--efficiency-target",
        default="best",
        help=f"val_accuracy target, or 'best': plain random search's best less {BEST_MARGIN}",
    )


def run(args, report: dict) -> dict:
    return measure(
        args.data,
        args.efficiency_trials,
        args.efficiency_rows,
        args.efficiency_epochs,
        None if args.efficiency_target == "best" else float(args.efficiency_target),
        args.out,
        args.efficiency_random_state,
        args.resume,
    )
