"""A tiny trained ensemble, shared by the serving tests."""
from __future__ import annotations

import pytest

from pipeline.katib.experiment import load
from pipeline.submission.retrain import train_best
from tests.conftest import REPO, SAMPLE


@pytest.fixture(scope="session")
def ensemble(tmp_path_factory):
    """Two tiny members on the sample (seconds, not minutes)."""
    out = tmp_path_factory.mktemp("ensemble")
    exp = load(REPO / "experiments" / "random.yaml")
    best = {"learning-rate": "0.002", "lr-decay": "0.9", "batch-size": "64", "optimizer": "adam",
            "conv-filters": "8", "dense-units": "32", "dropout": "0.2", "augment": "0.0", "arch": "pool"}
    train_best(exp, best, SAMPLE / "train.csv.gz", out, epochs=1, max_rows=300, ensemble=2)
    return out


# The browser test's model: the sample's first 1,800 rows, so rows 1,800-1,999 are digits it never saw.
TRAINED_ROWS = 1800


@pytest.fixture(scope="session")
def digit_model(tmp_path_factory):
    """A small model good enough to read drawn digits (about 95% on the unseen sample rows; ~10 s)."""
    out = tmp_path_factory.mktemp("digit-model")
    exp = load(REPO / "experiments" / "random.yaml")
    best = {"learning-rate": "0.002", "lr-decay": "0.9", "batch-size": "64", "optimizer": "adam",
            "conv-filters": "16", "dense-units": "64", "dropout": "0.2", "augment": "0.0", "arch": "pool"}
    train_best(exp, best, SAMPLE / "train.csv.gz", out, epochs=4, max_rows=TRAINED_ROWS)
    return out
