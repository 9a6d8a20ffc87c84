"""Where the bench runs and reads: the repository (trials run in it), Kaggle's data beside it, the sample."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "digit-recognizer"
SAMPLE = REPO / "data" / "sample"
DEFAULT_OUT = REPO / "runs" / "bench"
