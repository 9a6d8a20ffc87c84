"""The Katib oracle (oracle/: a Go program calling Katib v0.19.0's own packages),
one long-lived process per test session (per xdist worker).

`make test` builds oracle/bin/katib-oracle first. When the binary is missing or
older than its sources, the fixture builds it with `go build` (under a lock, so
two xdist workers do not build at once). Without Go, or when the build fails,
every oracle test FAILS with the reason: Go is part of the development
machines and CI, and a silent skip would hide that Katib fidelity went unchecked.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ORACLE_DIR = REPO / "oracle"
BINARY = ORACLE_DIR / "bin" / "katib-oracle"
KATIB_CONFIG = ORACLE_DIR / "testdata" / "katib-config.yaml"
BUILD_TIMEOUT_S = 1200  # a cold build (empty Go caches) takes ~7 min on a 2-core machine


def _sources() -> list[Path]:
    return [*ORACLE_DIR.glob("*.go"), ORACLE_DIR / "go.mod", ORACLE_DIR / "go.sum"]


def _stale() -> bool:
    if not BINARY.exists():
        return True
    built = BINARY.stat().st_mtime
    return any(p.exists() and p.stat().st_mtime > built for p in _sources())


def build_oracle() -> Path:
    """The oracle binary, built if needed; pytest.fail (never skip) when it cannot be."""
    if not _stale():
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    with open(BINARY.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _stale():
            return BINARY
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            pytest.fail(
                "the Katib oracle needs Go to build (oracle/, `make oracle`), and no `go` is on PATH: "
                "install Go (the development machines and CI have it); the oracle tests never skip",
                pytrace=False,
            )
        try:
            ran = subprocess.run(
                [go, "build", "-buildvcs=false", "-o", str(BINARY), "."],
                cwd=ORACLE_DIR,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`go build` of the Katib oracle took over {BUILD_TIMEOUT_S} s", pytrace=False)
        if ran.returncode != 0:
            pytest.fail(f"`go build` of the Katib oracle (oracle/) failed:\n{ran.stderr[-4000:]}", pytrace=False)
    return BINARY


class Oracle:
    """One katib-oracle process: JSON lines in, JSON lines out, in order."""

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen(
            [str(binary), str(KATIB_CONFIG)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.lock = threading.Lock()
        pong = self.ask("ping")
        assert pong.get("katib") == "v0.19.0", pong

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.ask_many([{"op": op, **fields}])[0]

    def ask_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answers in order; requests are written from a thread so a long batch cannot deadlock."""
        with self.lock:
            stdin, stdout = self.proc.stdin, self.proc.stdout
            assert stdin is not None and stdout is not None  # started with pipes

            def write():
                for r in requests:
                    stdin.write(json.dumps(r) + "\n")
                stdin.flush()

            writer = threading.Thread(target=write)
            writer.start()
            answers = []
            for r in requests:
                line = stdout.readline()
                if not line:
                    raise RuntimeError(f"katib-oracle exited (code {self.proc.poll()}) on {str(r)[:300]}")
                answers.append(json.loads(line))
            writer.join()
        for r, a in zip(requests, answers, strict=True):
            if not a.get("ok"):
                raise AssertionError(f"the oracle refused the request {str(r)[:300]}: {a.get('error')}")
        return answers

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def oracle():
    o = Oracle(build_oracle())
    yield o
    o.close()


def hypothesis_settings(n: int):
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=int(os.environ.get("ORACLE_EXAMPLES", n)),
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
