"""accuracy: the retrained default, N members with the trial's default flags (or another recipe's), their
probabilities averaged as `katib-digits train --ensemble N` does, scored on one 10 % hold-out of train.csv."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.plots import plot_errors
from bench.process import children_cpu_seconds, run_trial, self_cpu_seconds
from bench.stats import accuracy_interval
from pipeline.submission.retrain import ENSEMBLE_FLAGS, RETRAIN_ENSEMBLE, RETRAIN_OWNED_FLAGS  # the retrain measured
from trial.hardware import PRECISIONS  # the trial's --precision choices

ABOUT = (
    "the retrained default (pipeline.submission.retrain's seeds x epochs of the trial's defaults, averaged) "
    "on a 10% hold-out of train.csv (long: 9-13 minutes per member on 2 CPU cores)"
)


# What to use instead of a trial flag this section sets from its own options.
INSTEAD = {
    "--data": "the bench's --data",
    "--val-fraction": "the fixed 10 % hold-out",
    "--max-rows": "all rows",
    "--seed": "members' seeds 0..N-1: --accuracy-members",
    "--split-seed": "--accuracy-split-seed",
    "--model-out": "the bench's --out",
    "--epochs": "--accuracy-epochs",
    "--precision": "--accuracy-precision",
}
# The flags a recipe passed with --accuracy-flags may not set, each with what to use instead: the retrain's own
# (the section measures that retrain), its ensemble's (the members and their one hold-out) and --precision.
ACCURACY_OWNED_FLAGS = {
    flag: INSTEAD.get(flag, "nothing: the retrain drops it")
    for flag in (*RETRAIN_OWNED_FLAGS, *ENSEMBLE_FLAGS, "--precision")
}

# An error whose true label got less than this probability: the ensemble is sure of another digit.
CONFIDENT = 0.01


def accuracy_recipe(flags: str) -> list[str]:
    """`--accuracy-flags` as trial argv, checked by the trial's own parser here rather than minutes into a run."""
    import shlex

    from trial.cli import build_parser

    try:
        argv = shlex.split(flags)
    except ValueError as e:  # an unclosed quote
        raise SystemExit(f"benchmark: --accuracy-flags: {e}: {flags}") from None
    owned = [a.split("=")[0] for a in argv if a.split("=")[0] in ACCURACY_OWNED_FLAGS]
    if owned:
        raise SystemExit(
            f"benchmark: --accuracy-flags: {owned[0]} is set by the accuracy section itself "
            f"(instead: {ACCURACY_OWNED_FLAGS[owned[0]]})"
        )
    parser = build_parser()
    parser.exit_on_error = False
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise SystemExit(f"benchmark: --accuracy-flags: {e}") from None
    if unknown:
        raise SystemExit(f"benchmark: --accuracy-flags: not a trial flag: {unknown[0]} (see python -m trial --help)")
    return argv


def tuned_recipes(params: Path | None, top_k: int = 1) -> list[list[str]]:
    """The flags of a tuned Experiment's `top_k` best distinct configurations (`katib-digits tune`'s
    experiment.json or `kubectl get experiment -o json`), as `katib-digits train` retrains them, less the flags
    this section sets itself. The best alone is the Experiment's currentOptimalTrial; more come from the
    Trials in trials.json beside it (the dry-run's, or `kubectl get trials -l katib.kubeflow.org/experiment=NAME
    -o json`). No params: one recipe, the trial's defaults."""
    if params is None:
        if top_k != 1:
            raise SystemExit("benchmark: --accuracy-top-k: needs --accuracy-params (the tuned Experiment)")
        return [[]]
    from pipeline.errors import UserError
    from pipeline.katib.result import load_trials
    from pipeline.submission.retrain import best_trial_flags, drop_flags, load_best, top_configs

    try:
        experiment, assignments, _ = load_best(params, None)
        if top_k == 1:
            configs = [best_trial_flags(experiment, assignments)]
        else:
            trials = params.parent / "trials.json"
            configs = [f for _, f in top_configs(experiment, load_trials(trials, experiment), top_k, str(trials))]
    except (UserError, OSError) as e:
        raise SystemExit(f"benchmark: --accuracy-params: {e}") from None
    return [drop_flags(flags, ACCURACY_OWNED_FLAGS) for flags in configs]


def member_argv(
    data: Path,
    member: int,
    split_seed: int,
    model_dir: Path,
    epochs: int | None,
    precision: str | None,
    flags: Sequence[str],
) -> list[str]:
    """Member `member`'s trial argv: its seed, the one hold-out, then the recipe's flags."""
    argv = [
        "--data",
        str(data / "train.csv.gz"),
        "--val-fraction",
        "0.1",
        "--seed",
        str(member),
        "--split-seed",
        str(split_seed),
        "--model-out",
        str(model_dir),
    ] + (["--epochs", str(epochs)] if epochs else [])
    return argv + (["--precision", precision] if precision else []) + list(flags)  # None: the trial's default


def measure(
    data: Path,
    epochs: int | None,
    members: int,
    out: Path,
    resume: bool = False,
    split_seed: int = 0,
    precision: str | None = None,
    flags: Sequence[str] = (),
    recipes: Sequence[Sequence[str]] = ((),),
) -> dict:
    """The retrained default: `members` trials with the trial's default flags (seeds 0..N-1, one 10 % hold-out
    drawn with `split_seed`), their probabilities averaged the way `katib-digits train --ensemble N` does.
    `flags` (trial flags) make it another recipe's retrain, e.g. a larger batch with its learning rate.
    `recipes`: member K trains recipes[K % len(recipes)] (then `flags`): an ensemble of distinct configurations.

    Each member's figures are saved in `out` (accuracy-member-K.json); with `resume`, a member whose
    record holds the same command is reused, its recorded wall and CPU seconds counted, not retrained."""
    from pipeline.submission.retrain import hold_out_predictions

    runs, commands = [], []
    for k in range(members):
        model_dir = out / "accuracy-model" / f"member-{k}"
        argv = member_argv(data, k, split_seed, model_dir, epochs, precision, [*recipes[k % len(recipes)], *flags])
        commands.append("python -m trial " + " ".join(argv))
        record = out / f"accuracy-member-{k}.json"
        saved = json.loads(record.read_text()) if resume and record.exists() else {}
        if saved.get("command") == commands[-1] and (model_dir / "model.keras").exists():
            runs.append(saved)
            how = "reused"
        else:
            runs.append(
                {
                    **run_trial(argv, log=out / f"accuracy-member-{k}.log", progress=f"accuracy member {k}"),
                    "command": commands[-1],
                }
            )
            record.write_text(json.dumps(runs[-1], indent=1))
            how = "trained"
        val = runs[-1]["epochs"][-1]["val_accuracy"]
        print(
            f"accuracy: member {k} ({how}): val_accuracy {val:.4f} after {len(runs[-1]['epochs'])} epochs, "
            f"{runs[-1]['wall_s']:.0f} s wall, {runs[-1]['cpu_s']:.0f} s CPU",
            file=sys.stderr,
            flush=True,
        )
    cpu0, t0 = children_cpu_seconds() + self_cpu_seconds(), time.perf_counter()
    models = [out / "accuracy-model" / f"member-{k}" / "model.keras" for k in range(members)]
    x_val, y_val, rows, per_member = hold_out_predictions(models, data / "train.csv.gz", 0.1, split_seed=split_seed)
    eval_wall, eval_cpu = time.perf_counter() - t0, children_cpu_seconds() + self_cpu_seconds() - cpu0
    probabilities = per_member.mean(axis=0)
    predicted = probabilities.argmax(axis=1)
    member_wrong = per_member.argmax(axis=2) != y_val  # [member, row]
    members_wrong = member_wrong.sum(axis=0)
    wrong = [int(i) for i in (predicted != y_val).nonzero()[0]]
    # Line numbers in train.csv (line 1 is the header), so anyone can look the digit up. `members_wrong`: how
    # many members alone get it wrong too; errors every member makes are the ones more seeds cannot average away.
    errors = [
        {
            "train_csv_line": int(rows[i]) + 2,
            "label": int(y_val[i]),
            "predicted": int(predicted[i]),
            "p_label": round(float(probabilities[i, y_val[i]]), 4),
            "members_wrong": int(members_wrong[i]),
        }
        for i in wrong
    ]
    plot_errors(x_val[wrong], errors, out / "accuracy-errors.png")
    return {
        "commands": commands,
        "members": members,
        "split_seed": split_seed,
        "precision": precision or "default",
        "flags": list(flags),
        "recipes": [list(r) for r in recipes],
        "epochs_per_member": len(runs[0]["epochs"]),
        "hold_out_rows": len(y_val),
        "member_final_val_accuracy": [r["epochs"][-1]["val_accuracy"] for r in runs],
        "ensemble_val_accuracy": float((predicted == y_val).mean()),
        "ensemble_val_accuracy_ci95": accuracy_interval(int((predicted == y_val).sum()), len(y_val)),
        "wall_s": round(sum(r["wall_s"] for r in runs) + eval_wall, 1),
        "cpu_s": round(sum(r["cpu_s"] for r in runs) + eval_cpu, 1),
        "images_per_s": [r["images_per_s"] for r in runs],
        "val_accuracy_per_epoch": [[e["val_accuracy"] for e in r["epochs"]] for r in runs],
        "errors": errors,
        "confident_errors": sum(e["p_label"] < CONFIDENT for e in errors),
        "errors_every_member_makes": sum(e["members_wrong"] == members for e in errors),
        "member_errors": [int(n) for n in member_wrong.sum(axis=1)],
        "errors_picture": str(out / "accuracy-errors.png"),
    }


def add_arguments(group) -> None:
    group.add_argument("--accuracy-epochs", type=int, default=0, help="epochs per member (0 = the trial's default)")
    group.add_argument(
        "--accuracy-members",
        type=int,
        default=RETRAIN_ENSEMBLE,
        help=f"ensemble size of the retrained default (default {RETRAIN_ENSEMBLE}, as the pipeline retrains)",
    )
    group.add_argument(
        "--accuracy-split-seed",
        type=int,
        default=0,
        help="seed of the 10 %% hold-out (default 0); another seed measures the same recipe on other rows",
    )
    group.add_argument(
        "--accuracy-precision",
        choices=PRECISIONS,
        default=None,
        help="the members' --precision (default: the trial's own default)",
    )
    group.add_argument(
        "--accuracy-params",
        type=Path,
        default=None,
        help="a tuned Experiment (experiment.json from `katib-digits tune`, or `kubectl get experiment -o json`): "
        "the members train its best trial's flags, as `katib-digits train` would; --accuracy-flags come after them",
    )
    group.add_argument(
        "--accuracy-top-k",
        type=int,
        default=1,
        help="with --accuracy-params: member K trains the (K mod top-k)-th best distinct configuration of the "
        "Experiment's trials (trials.json beside it), seed K: an ensemble of distinct models (default 1: the best)",
    )
    group.add_argument(
        "--accuracy-flags",
        default="",
        help="more trial flags for every member, one string: another recipe's retrain, e.g. "
        "--accuracy-flags='--batch-size 128 --learning-rate 0.0014' (default: none)",
    )


def check(args) -> None:
    """--accuracy-flags checked before any section runs (whichever --only names), not minutes into a run."""
    accuracy_recipe(args.accuracy_flags)
    if args.accuracy_top_k < 1 or args.accuracy_top_k > args.accuracy_members:
        raise SystemExit(
            f"benchmark: --accuracy-top-k: {args.accuracy_top_k} "
            f"must be 1..--accuracy-members ({args.accuracy_members})"
        )
    tuned_recipes(args.accuracy_params, args.accuracy_top_k)


def run(args, report: dict) -> dict:
    return measure(
        args.data,
        args.accuracy_epochs,
        args.accuracy_members,
        args.out,
        args.resume,
        args.accuracy_split_seed,
        args.accuracy_precision,
        accuracy_recipe(args.accuracy_flags),
        tuned_recipes(args.accuracy_params, args.accuracy_top_k),
    )
