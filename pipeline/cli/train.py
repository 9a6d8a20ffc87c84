"""`katib-digits train` and `katib-digits predict`: retrain the best configuration
and write submission.csv, outside any pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.errors import UserError
from pipeline.katib.result import load_trials
from pipeline.submission.datafiles import find_csv, find_sample_submission
from pipeline.submission.predict import predict_submission
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS, load_best, top_configs, train_best


@click.command("train")
@click.option(
    "--params",
    "params",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="experiment.json from `katib-digits tune`, `kubectl get experiment -o json`, or a bare "
    "currentOptimalTrial object.",
)
@click.option(
    "--experiment",
    "experiment_yaml",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The Experiment YAML (required when --params is a bare currentOptimalTrial).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=Path("data/sample"),
    show_default=True,
    help="train.csv(.gz) or a folder holding it.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/train"),
    show_default=True,
    help="Writes model.keras, hparams.json, history.json and retrain.json here.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=RETRAIN_EPOCHS,
    show_default=True,
    help="0 = the epochs the best trial's command used (with --top-k, each member's trial's).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Hold out this fraction for reporting (0 = train on every labelled row).",
)
@click.option("--max-rows", type=click.IntRange(min=0), default=0, show_default=True, help="0 = all rows.")
@click.option(
    "--ensemble",
    type=click.IntRange(min=1),
    default=RETRAIN_ENSEMBLE,
    show_default=True,
    help="Train N models with seeds 0..N-1; `predict` averages their probabilities.",
)
@click.option(
    "--top-k",
    "top_k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Member N trains the (N mod K)-th best distinct configuration of the Experiment's Trials, seed N "
    "(1 = the best trial alone); at most --ensemble.",
)
@click.option(
    "--trials",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The Trials --top-k ranks: trials.json, which `katib-digits tune` writes beside experiment.json "
    "(default: beside --params), or, for a cluster Experiment, "
    "`kubectl get trials -l katib.kubeflow.org/experiment=NAME -o json`.",
)
def train_command(params, experiment_yaml, data, out, epochs, val_fraction, max_rows, ensemble, top_k, trials):
    """Retrain the best parameters of a tuned Experiment on all labelled rows.

    With --top-k K the --ensemble members train the K best distinct configurations of the Experiment's
    Trials in turn, instead of the best one with N seeds."""

    if top_k > ensemble:
        raise UserError(f"--top-k {top_k}: more than the --ensemble {ensemble} members; each configuration needs one")
    if trials is not None and top_k == 1:
        raise UserError("--trials: read only with --top-k K > 1")
    experiment, assignments, objective = load_best(params, experiment_yaml, f"--top-k {top_k}" if top_k > 1 else "")
    top = None
    if top_k > 1:
        trials = trials or params.parent / "trials.json"
        if not trials.exists():
            raise UserError(
                f"{trials}: file not found; --top-k {top_k} ranks the Experiment's Trials: `katib-digits tune` "
                f"writes trials.json beside experiment.json, or pass --trials FILE "
                f"(kubectl get trials -l katib.kubeflow.org/experiment={experiment.name} -o json)"
            )
        top = top_configs(experiment, load_trials(trials, experiment), top_k, str(trials))
    click.echo(
        f"best parameters: {' '.join(f'{k}={v}' for k, v in assignments.items())}"
        + (f" (objective {objective:g})" if objective is not None else ""),
        err=True,
    )
    if top:
        click.echo(f"top {top_k} configurations: {', '.join(name for name, _ in top)}", err=True)
    report = train_best(
        experiment, assignments, find_csv(data, "train"), out, epochs or None, val_fraction, max_rows, ensemble, top=top
    )
    (out / "retrain.json").write_text(
        json.dumps({**report, "assignments": assignments, "objective": objective}, indent=2)
    )
    click.echo(f"model: {report['model']}  " + " ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items()))


@click.command("predict")
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=Path("runs/train"),
    show_default=True,
    help="model.keras or the folder `katib-digits train --out` wrote.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=Path("data/sample"),
    show_default=True,
    help="test.csv(.gz) or a folder holding it (and sample_submission.csv, checked when present).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("submission.csv"), show_default=True
)
def predict_command(model, data, out):
    """Predict test.csv with a trained model and write submission.csv."""

    test = find_csv(data, "test")
    sample = find_sample_submission(data if data.is_dir() else test.parent)
    n = predict_submission(model, test, out, sample)
    click.echo(f"{out}: {n} rows" + (f" (layout checked against {sample})" if sample else ""))
