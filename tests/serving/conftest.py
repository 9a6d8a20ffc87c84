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
