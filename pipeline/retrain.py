"""Retrain the best trial on all labelled rows, predict test.csv, write submission.csv.

The best trial's flags come from the Experiment itself: its trial command is
rendered with the best assignments (the same substitution Katib does), then the
flags that describe *where* and *how long* (data, validation hold-out, epochs,
output) are replaced. No Python table of hyperparameter names: the search space
lives only in the YAML.
"""
from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from pipeline.errors import UserError

# Flags the retrain decides itself; the rendered trial command's values for them are dropped.
RETRAIN_OWNED_FLAGS = ("--data", "--max-rows", "--val-fraction", "--epochs", "--model-out", "--metrics-file",
                       "--cache-dir")
SUBMISSION_HEADER = ["ImageId", "Label"]
# The default retrain, the one bench/benchmark.py's accuracy section measures (README, Results):
# 3 seeds x 20 epochs, the trial's own defaults.
RETRAIN_EPOCHS = 20
RETRAIN_ENSEMBLE = 3


def best_trial_flags(experiment: dict[str, Any], assignments: dict[str, str]) -> list[str]:
    """The trial's own flags (after `python -m trial`) with the best assignments substituted."""
    from pipeline.render import trial_argv

    argv = list(trial_argv(experiment, assignments))
    for i in range(len(argv) - 1):
        if argv[i] == "-m" and argv[i + 1] == "trial":
            return argv[i + 2:]
    raise UserError(f"spec.trialTemplate: the primary container does not run `python -m trial` "
                    f"(rendered command: {' '.join(argv)})")


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


def retrain_argv(flags: Sequence[str], data: Path, model_dir: Path, epochs: int | None = None,
                 val_fraction: float = 0.0, max_rows: int = 0) -> list[str]:
    """The trial argv for a retrain: the best flags, then our data/epochs/output flags."""
    epochs = epochs or trial_epochs(flags)
    return [*drop_flags(flags, RETRAIN_OWNED_FLAGS), f"--data={data}", f"--max-rows={max_rows}",
            f"--val-fraction={val_fraction:g}", f"--epochs={epochs}", f"--model-out={model_dir}"]


def train_best(experiment: dict[str, Any], assignments: dict[str, str], data: str | Path, model_dir: str | Path,
               epochs: int | None = None, val_fraction: float = 0.0, max_rows: int = 0,
               ensemble: int = 1) -> dict[str, Any]:
    """Train the best configuration in-process; returns {argv, epochs, metrics, model}.

    `epochs` None or 0 keeps the epochs the best trial's command used.
    `ensemble` > 1 trains that many models with seeds 0..N-1 into model_dir/member-K/
    (one validation split for all); `predict_submission` averages their probabilities.
    Bad data or flags -> UserError; a diverged run -> RuntimeError.
    """
    if ensemble > 1:
        members = [_train_one(experiment, assignments, data, Path(model_dir) / f"member-{k}", epochs, val_fraction,
                              max_rows, extra_flags=[f"--seed={k}", "--split-seed=0"]) for k in range(ensemble)]
        report = {"argv": [m["argv"] for m in members], "epochs": members[0]["epochs"], "members": len(members),
                  "metrics": {name: sum(m["metrics"][name] for m in members) / len(members)
                              for name in members[0]["metrics"]},
                  "model": str(model_dir)}
        if val_fraction > 0:
            report["metrics"]["ensemble_val_accuracy"] = ensemble_val_accuracy(model_dir, data, val_fraction, max_rows)
        return report
    return _train_one(experiment, assignments, data, model_dir, epochs, val_fraction, max_rows)


def load_model(path: str | Path):
    """A saved trial model; importing trial.model registers its custom augmentation layer."""
    import keras

    import trial.model  # noqa: F401

    return keras.saving.load_model(path)


def hold_out_predictions(model_dir: str | Path | list[Path], data: str | Path, val_fraction: float,
                         max_rows: int = 0, split_seed: int = 0):
    """The hold-out the members (a folder as for `model_files`, or a list of model files) all left out:
    (pixels, labels, their 0-based data-row numbers in the CSV, each member's probabilities [member, row, digit]);
    the ensemble's are their mean over axis 0."""
    import numpy as np

    from trial.data import load_train
    from trial.train import split

    x, y = load_train(data, max_rows=max_rows)
    _, (x_val, y_val) = split(x, y, val_fraction, split_seed)
    _, (rows, _) = split(np.arange(len(y)), y, val_fraction, split_seed)  # same shuffle, so the same rows
    files = model_dir if isinstance(model_dir, list) else model_files(model_dir)
    probabilities = np.stack([load_model(f).predict(x_val.astype("float32"), batch_size=512, verbose=0) for f in files])
    return x_val, y_val, rows, probabilities


def ensemble_val_accuracy(model_dir: str | Path, data: str | Path, val_fraction: float, max_rows: int = 0,
                          split_seed: int = 0) -> float:
    """Accuracy of the members' averaged probabilities on the hold-out they all left out."""
    _, y_val, _, probabilities = hold_out_predictions(model_dir, data, val_fraction, max_rows, split_seed)
    return float((probabilities.mean(axis=0).argmax(axis=1) == y_val).mean())


def _train_one(experiment, assignments, data, model_dir, epochs, val_fraction, max_rows,
               extra_flags: Sequence[str] = ()) -> dict[str, Any]:
    from trial.cli import build_parser, main
    from trial.data import load_train

    data, model_dir = Path(data), Path(model_dir)
    load_train(data, max_rows=max_rows)  # DataError (one line, names the file) before any training
    argv = retrain_argv(best_trial_flags(experiment, assignments), data, model_dir, epochs, val_fraction, max_rows)
    argv += list(extra_flags)
    try:
        build_parser().parse_args(argv)
    except SystemExit:  # argparse already printed which flag and why
        raise UserError(f"the best trial's flags are not valid trial flags: {' '.join(argv)}") from None
    rc = main(argv)
    if rc == 2:
        raise UserError(f"retrain rejected its input (see the trial's message above): {' '.join(argv)}")
    if rc != 0:
        raise RuntimeError(f"retrain failed with exit code {rc}: python -m trial {' '.join(argv)}")
    history = json.loads((model_dir / "history.json").read_text())
    metrics = {name: values[-1] for name, values in history.items()
               if values and name in ("loss", "accuracy", "val_loss", "val_accuracy")}
    return {"argv": argv, "epochs": len(history.get("loss", [])), "metrics": metrics,
            "model": str(model_dir / "model.keras")}


def predict_submission(model_path: str | Path, test_path: str | Path, out_csv: str | Path,
                       sample_submission: str | Path | None = None, batch_size: int = 512) -> int:
    """Predict every test row in file order and write `ImageId,Label` (ImageId 1..N); returns N."""
    import numpy as np

    from trial.data import load_test

    paths = model_files(model_path)
    x = load_test(test_path)
    probabilities = sum(load_model(p).predict(x.astype("float32"), batch_size=batch_size, verbose=0)
                        for p in paths)
    labels = np.argmax(probabilities, axis=1)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SUBMISSION_HEADER)
        writer.writerows((i, int(label)) for i, label in enumerate(labels, start=1))
    check_submission(out_csv, len(x), sample_submission)
    return len(x)


def model_files(model_path: str | Path) -> list[Path]:
    """model.keras itself, or the folder `train` wrote: its model.keras, or every member-K/model.keras of an ensemble."""
    model_path = Path(model_path)
    if model_path.is_file():
        return [model_path]
    paths = [model_path / "model.keras"] if (model_path / "model.keras").is_file() else \
        sorted(model_path.glob("member-*/model.keras"))
    if not paths:
        raise UserError(f"{model_path}: model file not found (train one with `katib-digits train`)")
    return paths


def check_submission(path: str | Path, n_rows: int, sample_submission: str | Path | None = None) -> None:
    """Kaggle's layout: header `ImageId,Label`, ImageId 1..N in order, labels 0-9; same header and ids as the sample."""
    rows = _read_csv(Path(path))
    if rows[0] != SUBMISSION_HEADER:
        raise UserError(f"{path}: line 1 (header): expected 'ImageId,Label', found {','.join(rows[0])!r}")
    if len(rows) - 1 != n_rows:
        raise UserError(f"{path}: {len(rows) - 1} rows, expected {n_rows} (one per test row)")
    for lineno, row in enumerate(rows[1:], start=2):
        if not (len(row) == 2 and row[0] == str(lineno - 1) and len(row[1]) == 1 and row[1].isdigit()):
            raise UserError(f"{path}: line {lineno}: expected '{lineno - 1},<digit 0-9>', found {','.join(row)!r}")
    if sample_submission is not None:
        sample = _read_csv(Path(sample_submission))
        if sample[0] != rows[0]:
            raise UserError(f"{sample_submission}: header {','.join(sample[0])!r} differs from {path}'s "
                            f"{','.join(rows[0])!r}")
        if [r[:1] for r in sample[1:]] != [r[:1] for r in rows[1:]]:
            raise UserError(f"{sample_submission}: ImageId column ({len(sample) - 1} rows) differs from {path}'s "
                            f"({len(rows) - 1} rows): is it the sample for this test.csv?")


def _read_csv(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if not rows:
        raise UserError(f"{path}: empty file, expected a header 'ImageId,Label'")
    return rows


def load_best(params: str | Path, experiment_yaml: str | Path | None) -> tuple[dict[str, Any], dict[str, str], float | None]:
    """(Experiment spec, best assignments, objective or None) from a result file (+ the YAML for a bare trial)."""
    from pipeline.result import load_result, objective_value
    from pipeline.spec import load_experiment

    result = load_result(params)
    if experiment_yaml is not None:
        experiment = load_experiment(experiment_yaml)
    elif result.experiment is not None:
        experiment = result.experiment
    else:
        raise UserError(f"{params}: a bare currentOptimalTrial has no trial template; also pass "
                        f"--experiment experiments/X.yaml (the Experiment it came from)")
    with contextlib.suppress(UserError):
        return experiment, result.optimal.assignments, objective_value(result, experiment)
    return experiment, result.optimal.assignments, None


@click.command("train")
@click.option("--params", "params", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="experiment.json from `katib-digits tune`, `kubectl get experiment -o json`, or a bare "
                   "currentOptimalTrial object.")
@click.option("--experiment", "experiment_yaml", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The Experiment YAML (required when --params is a bare currentOptimalTrial).")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/sample"), show_default=True,
              help="train.csv(.gz) or a folder holding it.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/train"),
              show_default=True, help="Writes model.keras, hparams.json, history.json and retrain.json here.")
@click.option("--epochs", type=click.IntRange(min=0), default=RETRAIN_EPOCHS, show_default=True,
              help="0 = the epochs the best trial's command used.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Hold out this fraction for reporting (0 = train on every labelled row).")
@click.option("--max-rows", type=click.IntRange(min=0), default=0, show_default=True, help="0 = all rows.")
@click.option("--ensemble", type=click.IntRange(min=1), default=RETRAIN_ENSEMBLE, show_default=True,
              help="Train N models with seeds 0..N-1; `predict` averages their probabilities.")
def train_command(params, experiment_yaml, data, out, epochs, val_fraction, max_rows, ensemble):
    """Retrain the best parameters of a tuned Experiment on all labelled rows."""
    from pipeline.datafiles import find_csv

    experiment, assignments, objective = load_best(params, experiment_yaml)
    click.echo(f"best parameters: {' '.join(f'{k}={v}' for k, v in assignments.items())}"
               + (f" (objective {objective:g})" if objective is not None else ""), err=True)
    report = train_best(experiment, assignments, find_csv(data, "train"), out, epochs or None, val_fraction, max_rows,
                        ensemble)
    (out / "retrain.json").write_text(json.dumps({**report, "assignments": assignments, "objective": objective},
                                                 indent=2))
    click.echo(f"model: {report['model']}  " + " ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items()))


@click.command("predict")
@click.option("--model", "model", type=click.Path(path_type=Path), default=Path("runs/train"), show_default=True,
              help="model.keras or the folder `katib-digits train --out` wrote.")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/sample"), show_default=True,
              help="test.csv(.gz) or a folder holding it (and sample_submission.csv, checked when present).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("submission.csv"),
              show_default=True)
def predict_command(model, data, out):
    """Predict test.csv with a trained model and write submission.csv."""
    from pipeline.datafiles import find_csv, find_sample_submission

    test = find_csv(data, "test")
    sample = find_sample_submission(data if data.is_dir() else test.parent)
    n = predict_submission(model, test, out, sample)
    click.echo(f"{out}: {n} rows" + (f" (layout checked against {sample})" if sample else ""))
