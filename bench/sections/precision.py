"""precision: the default trial in float32 and in what `--precision auto` picks here, per batch size, each
against the matmul rate of its own precision."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.process import run_trial
from bench.rates import matmul_gflops, matmul_share, model_forward_flops
from bench.stats import significant

ABOUT = (
    "the default trial in float32 and in what --precision auto picks here (bfloat16 if float32), per batch "
    "size, side by side, each against the matmul rate of its own precision measured in the same run"
)


def measure(data: Path, rows: int, epochs: int, batch_sizes: tuple[int, ...], out: Path) -> dict:
    """The default trial (its own defaults, no validation split) in float32 and in the precision `--precision
    auto` picks here (mixed float16 on a GPU, mixed bfloat16 on a CPU; bfloat16 where auto keeps float32, to
    show what it would give), same rows, epochs and seed, per batch size; images/s and images per CPU second
    of the training come from the trial's own report. Each is set against the matmul rate of its
    precision, measured here too."""
    from trial.model import build_model

    argv = [
        "--data",
        str(data / "train.csv.gz"),
        "--max-rows",
        str(rows),
        "--val-fraction",
        "0",
        "--seed",
        "0",
        "--epochs",
        str(epochs),
    ]
    # A one-epoch trial with the default --precision fills the parsed-CSV cache and says what auto picks here,
    # in the trial's own first stderr line (trial.train.use_hardware).
    run_trial(argv[:4] + ["--epochs", "1", "--max-rows", "64"], log=out / "precision-auto-picks.log")
    picked = re.search(
        r"^trial: precision (\S+) \((.*)\), \d+ threads?$", Path(out / "precision-auto-picks.log.err").read_text(), re.M
    )
    if not picked:
        raise SystemExit(
            f"benchmark: precision: the trial did not name its precision on stderr; see "
            f"{out / 'precision-auto-picks.log.err'}"
        )
    auto, why = picked.groups()
    chosen = {"mixed_float16": "float16"}.get(auto, "bfloat16")
    flops = model_forward_flops(build_model()) * 3  # forward + backward per trained image
    peaks = {precision: matmul_gflops(precision) for precision in ("float32", chosen)}
    result: dict[str, Any] = {
        "rows": rows,
        "epochs": epochs,
        "auto_picks": auto,
        "auto_because": why,
        "compared": chosen,
        "matmul_gflops": {k: significant(v) for k, v in peaks.items()},
        "runs": [],
    }
    for batch in batch_sizes:
        row: dict[str, Any] = {"batch_size": batch}
        for precision in ("float32", chosen):
            ran = run_trial(
                [*argv, "--batch-size", str(batch), "--precision", precision],
                log=out / f"precision-{precision}-{batch}.log",
            )
            rate = ran["images_per_s"]
            row[precision] = {
                "images_per_s": rate,
                "images_per_cpu_s": ran["images_per_cpu_s"],
                "cpu_s": round(ran["cpu_s"], 1),
                **matmul_share(rate, flops, peaks[precision]),
            }
        row["ratio_vs_float32"] = round(row[chosen]["images_per_s"] / row["float32"]["images_per_s"], 2)
        # The same ratio in CPU time: wall-clock rates swing with the machine's neighbours, CPU seconds less.
        row["cpu_ratio_vs_float32"] = round(row[chosen]["images_per_cpu_s"] / row["float32"]["images_per_cpu_s"], 2)
        # Against float32 at the first batch size too: a larger batch in the chosen precision against the float32
        # default of before (batch 64) is the speed-up a change of both defaults would give.
        first = result["runs"][0]["float32"] if result["runs"] else row["float32"]  # this row is the first
        row["ratio_vs_float32_first_batch"] = round(row[chosen]["images_per_s"] / first["images_per_s"], 2)
        row["cpu_ratio_vs_float32_first_batch"] = round(row[chosen]["images_per_cpu_s"] / first["images_per_cpu_s"], 2)
        result["runs"].append(row)
    return result


def add_arguments(group) -> None:
    group.add_argument("--precision-rows", type=int, default=7560)
    group.add_argument("--precision-epochs", type=int, default=2)
    group.add_argument("--precision-batch-sizes", type=int, nargs="+", default=[64, 256])


def run(args, report: dict) -> dict:
    return measure(args.data, args.precision_rows, args.precision_epochs, tuple(args.precision_batch_sizes), args.out)
