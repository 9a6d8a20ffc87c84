"""`python -m trial`: the program one Katib trial runs.

Reads top to bottom: flags, data, model, train, report. Each epoch prints one
line in Katib's StdOut format (`epoch=3 loss=... accuracy=... val_loss=...
val_accuracy=...`); Keras' own progress bar is off because Katib's filter
cannot read it. Diagnostics go to stderr so stdout stays the metrics.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "sample" / "train.csv.gz"
OPTIMIZER_NAMES = ("adam", "adamw", "rmsprop", "sgd")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _fraction(low_inclusive: bool, high_inclusive: bool):
    def parse(text: str) -> float:
        value = float(text)
        ok = (value >= 0 if low_inclusive else value > 0) and (value <= 1 if high_inclusive else value < 1)
        if not ok or math.isnan(value):
            lo, hi = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
            raise argparse.ArgumentTypeError(f"{text} is outside {lo}0, 1{hi}")
        return value
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trial",
        description="Train the digit-recognizer CNN once and print one Katib metrics line per epoch "
                    "(epoch=N loss=.. accuracy=.. val_loss=.. val_accuracy=..). The defaults alone train "
                    "a model worth submitting.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle train.csv or train.csv.gz (label,pixel0..pixel783)")
    data.add_argument("--max-rows", type=_non_negative_int, default=0, help="use only the first N rows (0 = all), for smoke runs")
    data.add_argument("--val-fraction", type=_fraction(True, False), default=0.1, help="validation hold-out (0 = none: no val_* metrics)")
    data.add_argument("--cache-dir", type=Path, default=None, help="where parsed CSVs are cached (default $KATIB_DIGITS_CACHE or ~/.cache/katib-digits)")
    hp = p.add_argument_group("hyperparameters")
    hp.add_argument("--epochs", type=_positive_int, default=20)
    hp.add_argument("--batch-size", type=_positive_int, default=64)
    hp.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    hp.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam")
    hp.add_argument("--lr-decay", type=_fraction(False, True), default=0.9, help="learning rate multiplier per epoch (1 = constant)")
    hp.add_argument("--arch", choices=("strided", "pool"), default="strided",
                    help="conv block shape: conv3-conv3-conv5/stride2 (strided) or conv3-conv3-maxpool (pool)")
    hp.add_argument("--conv-filters", type=_positive_int, default=32, help="filters of the first conv block (the second has twice as many)")
    hp.add_argument("--dense-units", type=_positive_int, default=256)
    hp.add_argument("--dropout", type=_fraction(True, False), default=0.4)
    hp.add_argument("--augment", type=_fraction(True, False), default=0.1, help="rotation/shift/zoom strength (0.1 = 10 degrees, 10%%); 0 = off")
    hp.add_argument("--seed", type=int, default=42, help="weights, shuffling and augmentation (and the split, unless --split-seed)")
    hp.add_argument("--split-seed", type=int, default=None, help="seed of the validation split (default: --seed); "
                    "fixed, it keeps one hold-out across models trained with different --seed")
    out = p.add_argument_group("output")
    out.add_argument("--model-out", type=Path, default=None, help="write model.keras, hparams.json and history.json here")
    out.add_argument("--metrics-file", type=Path, default=None, help="also write the metric lines here (Katib File collector, TEXT format)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        os.environ["KATIB_DIGITS_CACHE"] = str(args.cache_dir)
    from trial.data import DataError, load_train

    try:
        x, y = load_train(args.data, max_rows=args.max_rows)
    except DataError as exc:
        print(f"trial: error: {exc}", file=sys.stderr)
        return 2
    from trial.train import TrainingDiverged, train

    try:
        train(args, x, y)
    except TrainingDiverged as exc:
        print(f"trial: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. too few rows for the split
        print(f"trial: error: {exc}", file=sys.stderr)
        return 2
    return 0
