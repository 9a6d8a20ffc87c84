"""Find the Kaggle files in a data folder: train.csv, test.csv (plain or .gz) and
sample_submission.csv. A path to a file is taken as that file."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import UserError

SAMPLE_SUBMISSION = "sample_submission.csv"


def find_csv(path: str | Path, stem: str) -> Path:
    """`path` itself when it is a file, else DIR/<stem>.csv or DIR/<stem>.csv.gz."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{path}: no such file or folder (expected a folder with {stem}.csv or {stem}.csv.gz)")
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (path / name).is_file():
            return path / name
    raise UserError(f"{path}: no {stem}.csv or {stem}.csv.gz in this folder")


def find_sample_submission(folder: str | Path) -> Path | None:
    candidate = Path(folder) / SAMPLE_SUBMISSION
    return candidate if candidate.is_file() else None
