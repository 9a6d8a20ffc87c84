"""A tiny trained ensemble, shared by the serving tests."""

from __future__ import annotations

import pytest

from pipeline.katib.experiment import load_unchecked
from pipeline.submission.retrain import train_best
from tests.conftest import REPO, SAMPLE


def _train(out, filters: int, dense: int, epochs: int, rows: int, ensemble: int = 1):
    """random.yaml's trial with a small fixed configuration, trained on the sample's first `rows` rows."""
    best = {
        "learning-rate": "0.002",
        "lr-decay": "0.9",
        "batch-size": "64",
        "optimizer": "adam",
        "conv-filters": str(filters),
        "dense-units": str(dense),
        "dropout": "0.2",
        "augment": "0.0",
        "arch": "pool",
    }
    train_best(
        load_unchecked(REPO / "experiments" / "random.yaml"),
        best,
        SAMPLE / "train.csv.gz",
        out,
        epochs=epochs,
        max_rows=rows,
        ensemble=ensemble,
    )
    return out


@pytest.fixture(scope="session")
def ensemble(tmp_path_factory):
    """Two tiny members on the sample (seconds, not minutes)."""
    return _train(tmp_path_factory.mktemp("ensemble"), 8, 32, epochs=1, rows=300, ensemble=2)


# The browser test's model: the sample's first 1,800 rows, so rows 1,800-1,999 are digits it never saw.
TRAINED_ROWS = 1800


@pytest.fixture(scope="session")
def digit_model(tmp_path_factory):
    """A small model good enough to read drawn digits (about 95% on the unseen sample rows; ~10 s)."""
    return _train(tmp_path_factory.mktemp("digit-model"), 16, 64, epochs=4, rows=TRAINED_ROWS)
