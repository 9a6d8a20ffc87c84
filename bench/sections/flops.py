"""flops: the machine's fp32 matmul rate, and the trial's effective FLOP rate against it (from the
throughput section's figures, when it ran first)."""

from __future__ import annotations

from bench.rates import matmul_gflops

ABOUT = "the machine's fp32 matmul rate vs the trial's effective FLOP rate"


def measure(throughput: dict | None, n: int = 2048, repeats: int = 10) -> dict:
    """fp32 matmul rate (TensorFlow, all cores) vs the trial's effective rate (3x forward FLOPs per trained image)."""
    peak = matmul_gflops("float32", n, repeats) * 1e9
    result = {"matmul_size": n, "matmul_gflops": round(peak / 1e9, 1)}
    if throughput:
        effective = throughput["trial_images_per_s"] * 3 * throughput["forward_mflops_per_image"] * 1e6
        result.update(
            {"trial_effective_gflops": round(effective / 1e9, 1), "ratio_trial_vs_matmul": round(effective / peak, 3)}
        )
    return result


def run(args, report: dict) -> dict:
    return measure(report.get("throughput"))
