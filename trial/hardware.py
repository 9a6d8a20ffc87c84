"""What the machine offers the trial: native bfloat16 on the CPU, a GPU, and the CPU
limit of the container (a pod with `limits.cpu: 4` on a 64-core node must not start
64 threads). Read from /proc/cpuinfo and the cgroup, without TensorFlow, so the
choice is printed before TensorFlow starts its thread pools."""

from __future__ import annotations

import math
import os
from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # either makes bfloat16 matmuls native
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the cgroup quota (v2 cpu.max, or v1 cfs), the affinity mask otherwise."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:
        text = (cgroup_root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
            quota = q / period if q > 0 else None
        except (OSError, ValueError):
            pass
    return max(1, min(available, math.ceil(quota))) if quota else max(1, available)


def choose_precision(asked: str, flags: set[str], has_gpu: bool) -> tuple[str, str]:
    """(Keras dtype policy, why): `auto` is mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native
    bfloat16, float32 otherwise; an explicit choice is taken as asked."""
    if asked not in PRECISIONS:
        raise ValueError(f"unknown precision {asked!r}, expected one of {', '.join(PRECISIONS)}")
    if asked == "float32":
        return "float32", "asked for"
    if asked == "bfloat16":
        return "mixed_bfloat16", "asked for"
    if asked == "float16":
        return "mixed_float16", "asked for"
    if has_gpu:
        return "mixed_float16", "a GPU is visible"
    native = sorted(f for f in BF16_CPU_FLAGS if f in flags)
    if native:
        return "mixed_bfloat16", f"the CPU has {', '.join(native)}"
    return "float32", "no GPU and no native bfloat16 on this CPU"
