"""Retrain the best trial on all labelled rows, predict test.csv, write submission.csv.

The best trial's flags come from the Experiment itself: its trial command is
rendered with the best assignments (the same substitution Katib does), then the
flags that describe *where* and *how long* (data, validation hold-out, epochs,
output) are replaced. No Python table of hyperparameter names: the search space
lives only in the YAML.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.katib.render import trial_argv
from pipeline.katib.status import TrialOutcome, ranked_trials
from pipeline.submission.predict import load_model, model_files
from trial.config import TrialConfig

# The one table of the trial flags the retrain decides itself: retrain_argv drops the rendered trial
# command's values for them (and sets the where and how long from its own arguments); bench.sections.accuracy,
# which measures this retrain, refuses them, and ENSEMBLE_FLAGS, in a recipe.
RETRAIN_OWNED_FLAGS = (
    "--data",
    "--max-rows",
    "--val-fraction",
    "--epochs",
    "--model-out",
    "--metrics-file",  # the File collector's path in a trial pod: nothing collects the retrain's
    "--cache-dir",
    "--checkpoint-dir",  # the retrain trains on other rows: it must not write into (or fail on) the experiment's volume
)
# The default retrain, the one bench.sections.accuracy measures (README, Results):
# 3 seeds x the trial's own default epochs (27).
RETRAIN_EPOCHS = TrialConfig.epochs
RETRAIN_ENSEMBLE = 3


def member_flags(member: int) -> list[str]:
    """What train_best adds to an ensemble member's flags: its own seed, and one validation split for all."""
    return [f"--seed={member}", "--split-seed=0"]


ENSEMBLE_FLAGS = tuple(flag.split("=")[0] for flag in member_flags(0))


def best_trial_flags(experiment: Experiment, assignments: dict[str, Any]) -> list[str]:
    """The trial's own flags (after `python -m trial`) with the best assignments substituted."""
    argv = list(trial_argv(experiment, assignments))
    for i in range(len(argv) - 1):
        if argv[i] == "-m" and argv[i + 1] == "trial":
            return argv[i + 2 :]
    raise UserError(
        f"spec.trialTemplate: the primary container does not run `python -m trial` (rendered command: {' '.join(argv)})"
    )


def top_configs(
    experiment: Experiment, trials: Sequence[TrialOutcome], k: int, source: str
) -> list[tuple[str, list[str]]]:
    """(trial name, trial flags) of the `k` best distinct configurations among `trials`, best first.

    Ranked by the objective as Katib picks currentOptimalTrial, so the first is the best trial. Two trials are
    one configuration when their flags are the same but for the ones the retrain sets itself (ASHA's rungs
    train one configuration for 3, 9 and 27 epochs); the better-ranked of them stands for it."""
    configs: list[tuple[str, list[str]]] = []
    seen: set[tuple[str, ...]] = set()
    ranked = ranked_trials(trials, experiment.objective)
    for t in ranked:
        flags = best_trial_flags(experiment, t.assignments or {})
        key = tuple(drop_flags(flags, RETRAIN_OWNED_FLAGS))
        if key not in seen:
            seen.add(key)
            configs.append((t.name, flags))
        if len(configs) == k:
            return configs
    raise UserError(
        f"{source}: {len(configs)} distinct configuration(s) among {len(ranked)} trial(s) with an objective; "
        f"top {k} asked for"
    )


def drop_flags(flags: Sequence[str], names: Iterable[str]) -> list[str]:
    """`flags` without the given options, in either `--x=v` or `--x v` form."""
    names = set(names)
    out: list[str] = []
    skip_value = False
    for token in flags:
        if skip_value:
            skip_value = False
            continue
        name = token.split("=", 1)[0]
        if name in names:
            skip_value = "=" not in token
            continue
        out.append(token)
    return out


def trial_epochs(flags: Sequence[str]) -> int:
    """The epochs these flags train for (the trial's default when the template does not set them)."""
    from trial.cli import build_parser

    return build_parser().parse_known_args(list(flags))[0].epochs


def retrain_argv(
    flags: Sequence[str],
    data: Path,
    model_dir: Path,
    epochs: int | None = None,
    val_fraction: float = 0.0,
    max_rows: int = 0,
) -> list[str]:
    """The trial argv for a retrain: the best flags, then our data/epochs/output flags."""
    epochs = epochs or trial_epochs(flags)
    return [
        *drop_flags(flags, RETRAIN_OWNED_FLAGS),
        f"--data={data}",
        f"--max-rows={max_rows}",
        f"--val-fraction={val_fraction:g}",
        f"--epochs={epochs}",
        f"--model-out={model_dir}",
    ]


def member_argvs(
    configs: Sequence[Sequence[str]],
    data: Path,
    model_dir: Path,
    epochs: int | None = None,
    val_fraction: float = 0.0,
    max_rows: int = 0,
    ensemble: int = 1,
) -> list[tuple[Path, list[str]]]:
    """(model folder, trial argv) of each model train_best trains: one model in `model_dir`, or an ensemble in
    model_dir/member-K/ where member K trains configs[K % len(configs)] with member_flags(K)."""
    if ensemble == 1:
        return [(model_dir, retrain_argv(configs[0], data, model_dir, epochs, val_fraction, max_rows))]
    members = []
    for k in range(ensemble):
        out = model_dir / f"member-{k}"
        argv = retrain_argv(configs[k % len(configs)], data, out, epochs, val_fraction, max_rows)
        members.append((out, argv + member_flags(k)))
    return members


def train_best(
    experiment: Experiment,
    assignments: dict[str, str],
    data: str | Path,
    model_dir: str | Path,
    epochs: int | None = None,
    val_fraction: float = 0.0,
    max_rows: int = 0,
    ensemble: int = 1,
    top: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> dict[str, Any]:
    """Train the best configuration in-process; returns {argv, epochs, metrics, model}.

    `epochs` None or 0 keeps the epochs the best trial's command used.
    `ensemble` > 1 trains that many models with seeds 0..N-1 into model_dir/member-K/
    (one validation split for all); `predict_submission` averages their probabilities.
    `top`, (trial name, flags) of distinct configurations as top_configs gives them (at most `ensemble`):
    member K trains top[K % len(top)] instead of `assignments`, and the report's `trials` names each
    member's trial.
    Bad data or flags -> UserError; a diverged run -> RuntimeError.
    """
    from trial.data import load_train

    if top is not None and not 1 <= len(top) <= ensemble:
        raise ValueError(f"{len(top)} configurations for {ensemble} member(s)")
    data, model_dir = Path(data), Path(model_dir)
    load_train(data, max_rows=max_rows)  # DataError (one line, names the file) before any training
    configs = [flags for _, flags in top] if top else [best_trial_flags(experiment, assignments)]
    members = member_argvs(configs, data, model_dir, epochs, val_fraction, max_rows, ensemble)
    # Every member's flags checked before the first trains: a later configuration's bad flag fails fast.
    for k, (_, argv) in enumerate(members):
        whose = f"trial {top[k % len(top)][0]}'s" if top else "the best trial's"
        _check_flags(argv, whose)
    runs = [_train_one(argv, out) for out, argv in members]
    trials = {"trials": [top[k % len(top)][0] for k in range(ensemble)]} if top else {}
    if ensemble == 1:
        return {**runs[0], **trials}
    report = {
        "argv": [m["argv"] for m in runs],
        "epochs": runs[0]["epochs"],
        "members": len(runs),
        **trials,
        "metrics": {name: sum(m["metrics"][name] for m in runs) / len(runs) for name in runs[0]["metrics"]},
        "model": str(model_dir),
    }
    if val_fraction > 0:
        report["metrics"]["ensemble_val_accuracy"] = ensemble_val_accuracy(model_dir, data, val_fraction, max_rows)
    return report


def hold_out_predictions(
    model_dir: str | Path | list[Path], data: str | Path, val_fraction: float, max_rows: int = 0, split_seed: int = 0
):
    """The hold-out the members (a folder as for `model_files`, or a list of model files) all left out:
    (pixels, labels, their 0-based data-row numbers in the CSV, each member's probabilities [member, row, digit]);
    the ensemble's are their mean over axis 0."""
    import numpy as np

    from trial.data import load_train
    from trial.train import split

    x, y = load_train(data, max_rows=max_rows)
    _, held_out = split(x, y, val_fraction, split_seed)
    _, held_rows = split(np.arange(len(y)), y, val_fraction, split_seed)  # same shuffle, so the same rows
    if held_out is None or held_rows is None:
        raise ValueError(f"val_fraction {val_fraction}: no hold-out to predict")
    (x_val, y_val), (rows, _) = held_out, held_rows
    files = model_dir if isinstance(model_dir, list) else model_files(model_dir)
    probabilities = np.stack([load_model(f).predict(x_val.astype("float32"), batch_size=512, verbose=0) for f in files])
    return x_val, y_val, rows, probabilities


def ensemble_val_accuracy(
    model_dir: str | Path, data: str | Path, val_fraction: float, max_rows: int = 0, split_seed: int = 0
) -> float:
    """Accuracy of the members' averaged probabilities on the hold-out they all left out."""
    _, y_val, _, probabilities = hold_out_predictions(model_dir, data, val_fraction, max_rows, split_seed)
    return float((probabilities.mean(axis=0).argmax(axis=1) == y_val).mean())


def _check_flags(argv: Sequence[str], whose: str) -> None:
    from trial.cli import build_parser

    try:
        build_parser().parse_args(list(argv))
    except SystemExit:  # argparse already printed which flag and why
        raise UserError(f"{whose} flags are not valid trial flags: {' '.join(argv)}") from None


def _train_one(argv: list[str], model_dir: Path) -> dict[str, Any]:
    from trial.cli import main

    rc = main(argv)
    if rc == 2:
        raise UserError(f"retrain rejected its input (see the trial's message above): {' '.join(argv)}")
    if rc != 0:
        raise RuntimeError(f"retrain failed with exit code {rc}: python -m trial {' '.join(argv)}")
    history = json.loads((model_dir / "history.json").read_text())
    metrics = {
        name: values[-1]
        for name, values in history.items()
        if values and name in ("loss", "accuracy", "val_loss", "val_accuracy")
    }
    return {
        "argv": argv,
        "epochs": len(history.get("loss", [])),
        "metrics": metrics,
        "model": str(model_dir / "model.keras"),
    }


def load_best(
    params: str | Path, experiment_yaml: str | Path | None, whole_for: str = ""
) -> tuple[Experiment, dict[str, str], float | None]:
    """(Experiment, best assignments, objective or None) from a result file (+ the YAML for a bare trial).

    `whole_for` names what needs the whole Experiment (its Trials come with it, not with a bare trial):
    a bare currentOptimalTrial is then refused, --experiment or not."""
    from pipeline.katib.experiment import load_unchecked
    from pipeline.katib.result import load_result, objective_value

    result = load_result(params)
    if whole_for and result.experiment is None:
        raise UserError(
            f"{params}: spec: missing, a bare currentOptimalTrial; {whole_for} needs the whole Experiment "
            f"(katib-digits tune's experiment.json, or kubectl get experiment NAME -o json) beside its Trials"
        )
    if experiment_yaml is not None:
        experiment = load_unchecked(experiment_yaml)
    elif result.experiment is not None:
        experiment = Experiment(result.experiment, str(params))
    else:
        raise UserError(
            f"{params}: a bare currentOptimalTrial has no trial template; also pass "
            f"--experiment experiments/X.yaml (the Experiment it came from)"
        )
    with contextlib.suppress(UserError):
        return experiment, result.optimal.assignments, objective_value(result, experiment.raw)
    return experiment, result.optimal.assignments, None
