"""One trial as `python -m trial` in its own process, and the CPU seconds this process and its children spent."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.paths import REPO
from trial.metrics import parse_line  # Katib's default filter, as the collector reads it


def children_cpu_seconds() -> float:
    """User + system seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    """User + system seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_trial(argv: list[str], log: Path | None = None, progress: str | None = None) -> dict:
    """Run `python -m trial` as a subprocess; wall and CPU seconds, metric lines, images/s.

    `progress` names a bar of the trial's epochs on stderr (the accuracy members train for minutes each)."""
    from tqdm import tqdm

    from pipeline.submission.retrain import trial_epochs

    cpu0, t0 = children_cpu_seconds(), time.perf_counter()
    log = log or Path(os.devnull)
    lines = []
    with (
        log.open("w") as out,
        open(f"{log}.err" if log != Path(os.devnull) else os.devnull, "w") as err,
        tqdm(total=trial_epochs(argv), desc=progress, unit="epoch", disable=progress is None) as bar,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "trial", *argv], stdout=subprocess.PIPE, stderr=err, cwd=REPO, text=True
        )
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:  # the trial flushes each epoch's line; also streamed to the log (tail -f)
            lines.append(line)
            out.write(line)
            out.flush()
            if line.startswith("epoch="):
                bar.update()
        returncode = proc.wait()
    wall, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
    stdout = "".join(lines)
    stderr = Path(f"{log}.err").read_text() if log != Path(os.devnull) else ""
    if returncode != 0:
        raise SystemExit(f"trial failed ({returncode}): {stderr.strip().splitlines()[-1:]}")
    epochs = [parse_line(line) for line in stdout.splitlines()]
    rate = re.search(r"\(([\d.]+) images/s\)", stderr)
    per_cpu = re.search(r"\(([\d.]+) images per CPU second\)", stderr)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "epochs": epochs,
        "images_per_s": float(rate.group(1)) if rate else None,
        "images_per_cpu_s": float(per_cpu.group(1)) if per_cpu else None,
    }
