"""asha: ASHA (our suggestion service's rule) against plain random search and random + medianstop, on the same
recorded configurations replayed in many orders; optionally experiments/asha.yaml run for real as a check."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.paths import REPO
from bench.replay import replay, replay_asha
from bench.stats import spread
from bench.tuning import BEST_MARGIN, epochs_to_target, trial_reports, tune

ABOUT = (
    "ASHA (our suggestion service's rule) vs random vs medianstop: epochs to a target over many replayed "
    "orders of the same recorded configurations (resumed promotions cost only new epochs)"
)


ASHA_ORDERS = 200


def measure(
    data: Path,
    trials: int,
    rows: int,
    out: Path,
    random_state: int = 7,
    orders: int = ASHA_ORDERS,
    resume: bool = False,
    run_trials: int = 0,
) -> dict:
    """ASHA (experiments/asha.yaml's rungs) vs plain random search vs random + medianstop on the same
    configurations: plain random search records `trials` configurations trained to asha's max_resource epochs,
    then each of `orders` random orders of them is replayed three ways (random: every configuration to the
    end; medianstop: Katib's rule from random-medianstop.yaml; asha: replay_asha). Target: plain random
    search's best less BEST_MARGIN. `run_trials` > 0 also runs experiments/asha.yaml for real with the same
    random_state (its own proposals, trials resuming from checkpoints) as a check on the replay."""
    import random

    from pipeline.katib.algorithms import asha_plan
    from pipeline.katib.experiment import load_unchecked
    from pipeline.katib.medianstop import MedianStopSettings

    asha_exp = load_unchecked(REPO / "experiments" / "asha.yaml")
    plan = asha_plan(asha_exp.algorithm_settings, asha_exp.parameters, asha_exp.name)
    folder = out / "asha-random"
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)
    _, wall = tune(
        "random.yaml",
        data,
        folder,
        trials,
        1,
        [f"--max-rows={rows}", f"--epochs={plan.max_resource}"],
        random_state=str(random_state),
    )
    curves = [[r.get("val_accuracy", 0.0) for r in reports] for reports in trial_reports(folder)]
    curves = [c for c in curves if len(c) == plan.max_resource]  # failed trials have no whole curve
    best = max(max(c) for c in curves)
    target = round(best - BEST_MARGIN, 4)
    settings = MedianStopSettings.from_experiment(load_unchecked(REPO / "experiments" / "random-medianstop.yaml"))
    rng = random.Random(random_state)
    per_order: dict[str, list[float]] = {"random": [], "medianstop": [], "asha": []}
    asha_totals, asha_best, missed = [], [], {"medianstop": 0, "asha": 0}
    for _ in range(orders):
        order = rng.sample(curves, len(curves))
        plain = replay(order, target, settings, False)[0]
        assert plain is not None  # every order holds the best curve, and the target is below its best
        per_order["random"].append(plain)
        stopped = replay(order, target, settings, True)[0]
        asha = replay_asha(order, target, plan)
        asha_totals.append(asha["epochs_total"])
        asha_best.append(asha["best"])
        for name, value in (("medianstop", stopped), ("asha", asha["epochs_to_target"])):
            if value is None:
                missed[name] += 1
            else:
                per_order[name].append(value)
    result = {
        "configurations": len(curves),
        "rows_per_trial": rows,
        "rungs": list(plan.rungs),
        "eta": plan.eta,
        "random_state": random_state,
        "orders": orders,
        "target_val_accuracy": target,
        "target_rule": f"best val_accuracy of plain random search ({best}) - {BEST_MARGIN}",
        "record_wall_s": round(wall, 1),
        "resumed": resume,
        "epochs_total": {"random": len(curves) * plan.max_resource, "asha": spread(asha_totals)},
        "best_val_accuracy": {"random": best, "asha": spread(asha_best)},
        "missed_orders": missed,
    }
    for name, values in per_order.items():
        if values:
            result[name] = spread(values)
    for name in ("medianstop", "asha"):
        if name in result:
            result[name]["speedup_vs_random"] = round(result["random"]["mean"] / result[name]["mean"], 2)
    if run_trials:
        run_folder = out / "asha-run"
        if not resume:
            shutil.rmtree(run_folder, ignore_errors=True)
        _, run_wall = tune(
            "asha.yaml", data, run_folder, run_trials, 1, [f"--max-rows={rows}"], random_state=str(random_state)
        )
        reached, spent = epochs_to_target(run_folder, target)
        result["real_asha_run"] = {
            "trials": run_trials,
            "epochs_to_target": reached,
            "epochs_total": spent,
            "wall_s": round(run_wall, 1),
        }
    return result


def add_arguments(group) -> None:
    group.add_argument(
        "--asha-trials", type=int, default=27, help="configurations plain random search records (default 27)"
    )
    group.add_argument("--asha-rows", type=int, default=2000)
    group.add_argument("--asha-random-state", type=int, default=7)
    group.add_argument("--asha-orders", type=int, default=ASHA_ORDERS, help=f"replayed orders (default {ASHA_ORDERS})")
    group.add_argument(
        "--asha-run-trials",
        type=int,
        default=0,
        help="also run experiments/asha.yaml for real with this many trials (0: replay only)",
    )


def run(args, report: dict) -> dict:
    return measure(
        args.data,
        args.asha_trials,
        args.asha_rows,
        args.out,
        args.asha_random_state,
        args.asha_orders,
        args.resume,
        args.asha_run_trials,
    )
