"""Predict test.csv with a trained model (or the members of an ensemble) and write
Kaggle's submission.csv, checked against the test file it came from."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.errors import UserError

SUBMISSION_HEADER = ["ImageId", "Label"]


def load_model(path: str | Path):
    """A saved trial model; importing trial.model registers its custom augmentation layer."""
    import keras

    import trial.model  # noqa: F401

    return keras.saving.load_model(path)


def predict_submission(
    model_path: str | Path,
    test_path: str | Path,
    out_csv: str | Path,
    sample_submission: str | Path | None = None,
    batch_size: int = 512,
    expected_rows: int | None = None,
) -> int:
    """Predict every test row in file order and write `ImageId,Label` (ImageId 1..N); returns N.
    `expected_rows`: what the prepare step counted in the same test file; another count is refused."""
    import numpy as np

    from trial.data import load_test

    x = load_test(test_path)
    if expected_rows is not None and len(x) != int(expected_rows):
        raise UserError(
            f"{test_path}: {len(x)} test rows, but the prepare step counted {expected_rows}: "
            "the submission would not answer the test file that was prepared"
        )
    paths = model_files(model_path)
    probabilities = sum(load_model(p).predict(x.astype("float32"), batch_size=batch_size, verbose=0) for p in paths)
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
    """model.keras itself, or the folder `train` wrote: its model.keras, or every member-K/model.keras of an
    ensemble."""
    model_path = Path(model_path)
    if model_path.is_file():
        return [model_path]
    paths = (
        [model_path / "model.keras"]
        if (model_path / "model.keras").is_file()
        else sorted(model_path.glob("member-*/model.keras"))
    )
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
            raise UserError(
                f"{sample_submission}: header {','.join(sample[0])!r} differs from {path}'s {','.join(rows[0])!r}"
            )
        if [r[:1] for r in sample[1:]] != [r[:1] for r in rows[1:]]:
            raise UserError(
                f"{sample_submission}: ImageId column ({len(sample) - 1} rows) differs from {path}'s "
                f"({len(rows) - 1} rows): is it the sample for this test.csv?"
            )


def _read_csv(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if not rows:
        raise UserError(f"{path}: empty file, expected a header 'ImageId,Label'")
    return rows
