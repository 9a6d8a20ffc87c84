"""Shared test fixtures. Tests that need ../shared skip with a reason when it is absent."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED = Path(os.environ.get("KATIB_DIGITS_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data" / "digit-recognizer"
SHARED_KATIB = SHARED / "katib"


@pytest.fixture(autouse=True, scope="session")
def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Parsed-CSV cache in a per-session temp dir, never in the user's home.
    monkeypatch.setenv("KATIB_DIGITS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared_katib() -> Path:
    if not (SHARED_KATIB / "SEMANTICS.md").exists():
        pytest.skip(f"needs Katib reference files at {SHARED_KATIB} (../shared is absent in a plain clone)")
    return SHARED_KATIB


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "train.csv.gz").exists():
        pytest.skip(f"needs the competition data at {SHARED_DATA} (../shared is absent in a plain clone)")
    return SHARED_DATA


def must_search(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """re.search where the test needs a match: an AssertionError naming the pattern when there is none."""
    found = re.search(pattern, text, flags)
    assert found is not None, f"no match for {pattern!r}"
    return found


@dataclass
class Ran:
    """What one `katib-digits` command did: exit status and its two streams."""

    returncode: int
    stdout: str
    stderr: str


def katib_digits(*args: str) -> Ran:
    """The console command run in this process with click's CliRunner (same exit codes and one-line
    errors as the installed `katib-digits`, without a new Python process)."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="katib-digits")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not an exit status: show its traceback
    return Ran(result.exit_code, result.stdout, result.stderr)
