"""`python -m trial`: the program one Katib trial runs.

Reads top to bottom: flags, data, model, train, report. Each epoch prints one
line in Katib's StdOut format (`epoch=3 loss=... accuracy=... val_loss=...
val_accuracy=...`); Keras' own progress bar is off because Katib's filter
cannot read it. Diagnostics go to stderr so stdout stays the metrics.
The flags are generated from `trial.config.TrialConfig`, their one source.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from trial.config import DEFAULT_DATA, GROUPS, TrialConfig

__all__ = ["DEFAULT_DATA", "build_parser", "main"]  # DEFAULT_DATA: the image's smoke test prints it


def _arg_type(parse, check, name: str):
    """argparse `type=`: parse the text, then run the field's check; errors quote the text as typed."""

    def convert(text: str):
        value = parse(text)
        problem = check and check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value

    convert.__name__ = name  # argparse says "invalid int value: 'abc'" when parse() fails
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trial",
        description="Train the digit-recognizer CNN once and print one Katib metrics line per epoch "
        "(epoch=N loss=.. accuracy=.. val_loss=.. val_accuracy=..). The defaults alone train "
        "a model worth submitting.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for f in fields(TrialConfig):
        meta = f.metadata
        kwargs = {"default": f.default, "help": meta["help"].replace("%", "%%")}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        elif meta["parse"] is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _arg_type(meta["parse"], meta["check"], meta["parse"].__name__.lower())
        groups[meta["group"]].add_argument("--" + f.name.replace("_", "-"), **kwargs)
    return p


def main(argv: list[str] | None = None) -> int:
    config = TrialConfig.from_args(build_parser().parse_args(argv))
    if config.cache_dir:
        os.environ["KATIB_DIGITS_CACHE"] = str(config.cache_dir)
    from trial.data import DataError, load_train

    try:
        x, y = load_train(config.data, max_rows=config.max_rows)
    except DataError as exc:
        print(f"trial: error: {exc}", file=sys.stderr)
        return 2
    from trial.train import TrainingDiverged, train

    try:
        train(config, x, y)
    except TrainingDiverged as exc:
        print(f"trial: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. too few rows for the split
        print(f"trial: error: {exc}", file=sys.stderr)
        return 2
    return 0
