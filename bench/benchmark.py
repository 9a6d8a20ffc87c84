"""Benchmarks for katib-digits: prints figures as a table and JSON (issue 7).

    python bench/benchmark.py [--data DIR] [--only NAME ...] [--json-out FILE]

Sections (all by default):
  throughput  trial images/s vs a bare `model.fit` on in-memory arrays (same model)
  flops       the machine's fp32 matmul rate vs the trial's effective FLOP rate
  precision   the default trial in float32 and in what --precision auto picks here (bfloat16 if float32), per batch
              size, side by side, each against the matmul rate of its own precision measured in the same run
  profile     where one epoch of the default trial goes: TensorFlow's profiler, op self time grouped by role
  overhead    dry-run overhead per trial (N one-epoch trials via `katib-digits tune`)
  asha        ASHA (our suggestion service's rule) vs random vs medianstop: epochs to a target over many
              replayed orders of the same recorded configurations (resumed promotions cost only new epochs)
  efficiency  epochs to first reach a val_accuracy target: medianstop / hyperband vs plain random
              (default target: the best plain random search finds, less a margin), and the mean of
              the same over many orders of random search's recorded trials (the luck of one order removed)
  accuracy    the retrained default (pipeline/retrain.py's seeds x epochs of the trial's defaults,
              averaged) on a 10% hold-out of train.csv (long: 9-13 minutes per member on 2 CPU cores)
  serve       `katib-digits serve` under load on loopback: N clients POSTing real test rows
              (data/sample/test.csv.gz) for S seconds (and at most M requests); requests/s, latency
              percentiles, every status, the server's RSS and threads before, during and after
Figures depend on the machine and its load; each section prints what it ran.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.submission.retrain import RETRAIN_ENSEMBLE  # noqa: E402  (the ensemble size the pipeline retrains)
from trial.hardware import PRECISIONS  # noqa: E402  (the trial's --precision choices)
from trial.metrics import parse_line  # noqa: E402  (Katib's default filter, as the collector reads it)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "digit-recognizer"
SAMPLE = REPO / "data" / "sample"


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_trial(argv: list[str], log: Path | None = None, progress: str | None = None) -> dict:
    """Run `python -m trial` as a subprocess; wall and CPU seconds, metric lines, images/s.

    `progress` names a bar of the trial's epochs on stderr (the accuracy members train for minutes each)."""
    from tqdm import tqdm

    from pipeline.submission.retrain import trial_epochs

    cpu0, t0 = children_cpu_seconds(), time.perf_counter()
    log = log or Path(os.devnull)
    lines = []
    with log.open("w") as out, open(f"{log}.err" if log != Path(os.devnull) else os.devnull, "w") as err, \
            tqdm(total=trial_epochs(argv), desc=progress, unit="epoch", disable=progress is None) as bar:
        proc = subprocess.Popen([sys.executable, "-m", "trial", *argv], stdout=subprocess.PIPE, stderr=err, cwd=REPO,
                                text=True)
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
    return {"wall_s": wall, "cpu_s": cpu, "epochs": epochs, "images_per_s": float(rate.group(1)) if rate else None,
            "images_per_cpu_s": float(per_cpu.group(1)) if per_cpu else None}


# The accuracy section's own flags: a recipe passed with --accuracy-flags may not move the hold-out or the members.
# Each names what to use instead.
ACCURACY_OWNED_FLAGS = {
    "--data": "the bench's --data", "--val-fraction": "the fixed 10 % hold-out", "--max-rows": "all rows",
    "--seed": "members' seeds 0..N-1: --accuracy-members", "--split-seed": "--accuracy-split-seed",
    "--model-out": "the bench's --out", "--epochs": "--accuracy-epochs", "--precision": "--accuracy-precision",
}


def accuracy_recipe(flags: str) -> list[str]:
    """`--accuracy-flags` as trial argv, checked by the trial's own parser here rather than minutes into a run."""
    import shlex

    from trial.cli import build_parser

    try:
        argv = shlex.split(flags)
    except ValueError as e:  # an unclosed quote
        raise SystemExit(f"benchmark: --accuracy-flags: {e}: {flags}") from None
    owned = [a.split("=")[0] for a in argv if a.split("=")[0] in ACCURACY_OWNED_FLAGS]
    if owned:
        raise SystemExit(f"benchmark: --accuracy-flags: {owned[0]} is set by the accuracy section itself "
                         f"(instead: {ACCURACY_OWNED_FLAGS[owned[0]]})")
    parser = build_parser()
    parser.exit_on_error = False
    try:
        _, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise SystemExit(f"benchmark: --accuracy-flags: {e}") from None
    if unknown:
        raise SystemExit(f"benchmark: --accuracy-flags: not a trial flag: {unknown[0]} (see python -m trial --help)")
    return argv


def bench_accuracy(data: Path, epochs: int | None, members: int, out: Path, resume: bool = False,
                   split_seed: int = 0, precision: str | None = None, flags: list[str] = ()) -> dict:
    """The retrained default: `members` trials with the trial's default flags (seeds 0..N-1, one 10 % hold-out
    drawn with `split_seed`), their probabilities averaged the way `katib-digits train --ensemble N` does.
    `flags` (trial flags) make it another recipe's retrain, e.g. a larger batch with its learning rate.

    Each member's figures are saved in `out` (accuracy-member-K.json); with `resume`, a member whose
    record holds the same command is reused, its recorded wall and CPU seconds counted, not retrained."""
    from pipeline.submission.retrain import hold_out_predictions

    runs, commands = [], []
    for k in range(members):
        model_dir = out / "accuracy-model" / f"member-{k}"
        argv = ["--data", str(data / "train.csv.gz"), "--val-fraction", "0.1", "--seed", str(k),
                "--split-seed", str(split_seed), "--model-out", str(model_dir)] + (["--epochs", str(epochs)] if epochs else [])
        argv += (["--precision", precision] if precision else []) + list(flags)  # None: the trial's default
        commands.append("python -m trial " + " ".join(argv))
        record = out / f"accuracy-member-{k}.json"
        saved = json.loads(record.read_text()) if resume and record.exists() else {}
        if saved.get("command") == commands[-1] and (model_dir / "model.keras").exists():
            runs.append(saved)
            how = "reused"
        else:
            runs.append({**run_trial(argv, log=out / f"accuracy-member-{k}.log", progress=f"accuracy member {k}"),
                         "command": commands[-1]})
            record.write_text(json.dumps(runs[-1], indent=1))
            how = "trained"
        val = runs[-1]["epochs"][-1]["val_accuracy"]
        print(f"accuracy: member {k} ({how}): val_accuracy {val:.4f} after {len(runs[-1]['epochs'])} epochs, "
              f"{runs[-1]['wall_s']:.0f} s wall, {runs[-1]['cpu_s']:.0f} s CPU", file=sys.stderr, flush=True)
    cpu0, t0 = children_cpu_seconds() + _self_cpu_seconds(), time.perf_counter()
    models = [out / "accuracy-model" / f"member-{k}" / "model.keras" for k in range(members)]
    x_val, y_val, rows, per_member = hold_out_predictions(models, data / "train.csv.gz", 0.1, split_seed=split_seed)
    eval_wall, eval_cpu = time.perf_counter() - t0, children_cpu_seconds() + _self_cpu_seconds() - cpu0
    probabilities = per_member.mean(axis=0)
    predicted = probabilities.argmax(axis=1)
    member_wrong = per_member.argmax(axis=2) != y_val  # [member, row]
    members_wrong = member_wrong.sum(axis=0)
    wrong = [int(i) for i in (predicted != y_val).nonzero()[0]]
    # Line numbers in train.csv (line 1 is the header), so anyone can look the digit up. `members_wrong`: how
    # many members alone get it wrong too; errors every member makes are the ones more seeds cannot average away.
    errors = [{"train_csv_line": int(rows[i]) + 2, "label": int(y_val[i]), "predicted": int(predicted[i]),
               "p_label": round(float(probabilities[i, y_val[i]]), 4), "members_wrong": int(members_wrong[i])}
              for i in wrong]
    plot_errors(x_val[wrong], errors, out / "accuracy-errors.png")
    return {
        "commands": commands, "members": members, "split_seed": split_seed, "precision": precision or "default",
        "flags": list(flags), "epochs_per_member": len(runs[0]["epochs"]),
        "hold_out_rows": len(y_val), "member_final_val_accuracy": [r["epochs"][-1]["val_accuracy"] for r in runs],
        "ensemble_val_accuracy": float((predicted == y_val).mean()),
        "ensemble_val_accuracy_ci95": accuracy_interval(int((predicted == y_val).sum()), len(y_val)),
        "wall_s": round(sum(r["wall_s"] for r in runs) + eval_wall, 1),
        "cpu_s": round(sum(r["cpu_s"] for r in runs) + eval_cpu, 1),
        "images_per_s": [r["images_per_s"] for r in runs],
        "val_accuracy_per_epoch": [[e["val_accuracy"] for e in r["epochs"]] for r in runs],
        "errors": errors, "confident_errors": sum(e["p_label"] < CONFIDENT for e in errors),
        "errors_every_member_makes": sum(e["members_wrong"] == members for e in errors),
        "member_errors": [int(n) for n in member_wrong.sum(axis=1)],
        "errors_picture": str(out / "accuracy-errors.png"),
    }


def accuracy_interval(correct: int, total: int) -> list[float]:
    """Wilson 95 % interval of an accuracy measured on `total` rows: on 4,200 rows it is about +-0.002, as wide as
    the gap between the figures compared here, so a single hold-out cannot tell 0.9956 from 0.996."""
    from scipy.stats import binomtest

    ci = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


# An error whose true label got less than this probability: the ensemble is sure of another digit.
CONFIDENT = 0.01


def plot_errors(images, errors: list[dict], path: Path) -> None:
    """The hold-out digits the ensemble gets wrong, one tile each: a glance tells a model error from a bad label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 8
    rows = max(1, -(-len(errors) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, error in zip(axes.flat, images, errors):
        ax.imshow(image.reshape(28, 28), cmap="gray_r")
        ax.set_title(f"line {error['train_csv_line']}\nlabel {error['label']}, says {error['predicted']}\n"
                     f"p(label) {error['p_label']:.2f}", fontsize=7)
    fig.suptitle(f"{len(errors)} hold-out errors of the retrained ensemble", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def model_forward_flops(model) -> int:
    """Multiply-adds x2 of the conv and dense layers for one image (the rest is noise)."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            flops += 2 * h * w * c_out * k_h * k_w * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def bench_throughput(data: Path, rows: int, epochs: int, out: Path) -> dict:
    """Our trial (CSV cache, tf.data, callbacks) vs a bare `model.fit` on in-memory arrays, same model."""
    argv = ["--data", str(data / "train.csv.gz"), "--max-rows", str(rows), "--val-fraction", "0",
            "--epochs", str(epochs), "--seed", "0", "--precision", "float32"]  # the bare fit below is float32
    run_trial(argv[:4] + ["--epochs", "1", "--max-rows", "64"])  # fills the parsed-CSV cache
    trial = run_trial(argv, log=out / "throughput.log")

    import keras

    from trial.data import load_train
    from trial.model import build_model, make_optimizer

    x, y = load_train(data / "train.csv.gz", max_rows=rows)
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(optimizer=make_optimizer("adam", 1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x.astype("float32"), y, batch_size=64, epochs=epochs, verbose=0)
    bare = rows * epochs / (time.perf_counter() - t0)
    return {"rows": rows, "epochs": epochs, "trial_images_per_s": round(trial["images_per_s"], 1),
            "bare_keras_images_per_s": round(bare, 1), "ratio_trial_vs_bare": round(trial["images_per_s"] / bare, 3),
            "forward_mflops_per_image": round(model_forward_flops(model) / 1e6, 2)}


def bench_flops(throughput: dict | None, n: int = 2048, repeats: int = 10) -> dict:
    """fp32 matmul rate (TensorFlow, all cores) vs the trial's effective rate (3x forward FLOPs per trained image)."""
    peak = matmul_gflops("float32", n, repeats) * 1e9
    result = {"matmul_size": n, "matmul_gflops": round(peak / 1e9, 1)}
    if throughput:
        effective = throughput["trial_images_per_s"] * 3 * throughput["forward_mflops_per_image"] * 1e6
        result.update({"trial_effective_gflops": round(effective / 1e9, 1), "ratio_trial_vs_matmul": round(effective / peak, 3)})
    return result


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """TensorFlow's n x n matmul rate in `dtype` on all cores."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.linalg.matmul(a, b).numpy()  # warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def significant(value: float, digits: int = 3) -> float:
    """`value` to `digits` significant digits. A fixed number of decimals does not fit rates that span
    orders of magnitude: an emulated bfloat16 matmul of 1.8 GFLOP/s and a trial's 0.104 GFLOP/s shown as
    0.1 would lose 4 % of the ratio they make."""
    return float(f"{value:.{digits}g}")


def matmul_share(images_per_s: float, flops_per_image: float, matmul_gflops: float) -> dict:
    """A training rate as GFLOP/s and as a share of the matmul rate of its precision, both computed from
    the unrounded figures, then each rounded to 3 significant digits."""
    effective = images_per_s * flops_per_image / 1e9
    return {"effective_gflops": significant(effective), "of_matmul": significant(effective / matmul_gflops)}


def bench_precision(data: Path, rows: int, epochs: int, batch_sizes: tuple[int, ...], out: Path) -> dict:
    """The default trial (its own defaults, no validation split) in float32 and in the precision `--precision
    auto` picks here (mixed float16 on a GPU, mixed bfloat16 on a CPU; bfloat16 where auto keeps float32, to
    show what it would give), same rows, epochs and seed, per batch size; images/s and images per CPU second
    of the training come from the trial's own report. Each is set against the matmul rate of its
    precision, measured here too."""
    from trial.model import build_model

    argv = ["--data", str(data / "train.csv.gz"), "--max-rows", str(rows), "--val-fraction", "0", "--seed", "0",
            "--epochs", str(epochs)]
    # A one-epoch trial with the default --precision fills the parsed-CSV cache and says what auto picks here,
    # in the trial's own first stderr line (trial.train.use_hardware).
    run_trial(argv[:4] + ["--epochs", "1", "--max-rows", "64"], log=out / "precision-auto-picks.log")
    picked = re.search(r"^trial: precision (\S+) \((.*)\), \d+ threads?$",
                       Path(out / "precision-auto-picks.log.err").read_text(), re.M)
    if not picked:
        raise SystemExit(f"benchmark: precision: the trial did not name its precision on stderr; see "
                         f"{out / 'precision-auto-picks.log.err'}")
    auto, why = picked.groups()
    chosen = {"mixed_float16": "float16"}.get(auto, "bfloat16")
    flops = model_forward_flops(build_model()) * 3  # forward + backward per trained image
    peaks = {precision: matmul_gflops(precision) for precision in ("float32", chosen)}
    result = {"rows": rows, "epochs": epochs, "auto_picks": auto, "auto_because": why, "compared": chosen,
              "matmul_gflops": {k: significant(v) for k, v in peaks.items()}, "runs": []}
    for batch in batch_sizes:
        row = {"batch_size": batch}
        for precision in ("float32", chosen):
            ran = run_trial([*argv, "--batch-size", str(batch), "--precision", precision],
                            log=out / f"precision-{precision}-{batch}.log")
            rate = ran["images_per_s"]
            row[precision] = {"images_per_s": rate, "images_per_cpu_s": ran["images_per_cpu_s"],
                              "cpu_s": round(ran["cpu_s"], 1),
                              **matmul_share(rate, flops, peaks[precision])}
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


# Op types of TensorFlow's profile, grouped by what they do in one training epoch (the first match wins).
PROFILE_GROUPS = [("convolution, backward", r"Conv2DBackprop"), ("convolution, forward", r"Conv2D"),
                  ("dense layer", r"MatMul"), ("augmentation", r"ImageProjectiveTransform|StatelessRandom"),
                  # Casts: the input's one per batch, and mixed precision's between float32 variables and
                  # bfloat16/float16 activations (most of them, when a mixed policy trains).
                  ("dtype casts", r"^Cast$"),
                  ("input pipeline", r"^(Dataset|Iterator|IteratorGetNext|GatherV2)"),
                  ("optimizer", r"ResourceApply|AssignAdd|AssignSub|AssignVariable"),
                  ("batch norm, dropout, loss, other element-wise", r".")]


def bench_profile(data: Path, rows: int, out: Path, precision: str = "auto") -> dict:
    """Where one epoch of the default trial's training goes, in `precision` (as the trial's --precision: auto,
    the default, is what a trial here trains in): TensorFlow's profiler over the second epoch (the first pays
    for tracing) of the trial's own model, optimizer and tf.data input, then the profile's framework op
    statistics (self time per op type on the host's threads, idle time left out), grouped."""
    import collections
    import math

    import keras
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin  # what TensorBoard reads

    from trial import train as trial_train
    from trial.config import TrialConfig
    from trial.data import load_train
    from trial.model import build_model, make_optimizer

    c = TrialConfig(precision=precision)
    x, y = load_train(data / "train.csv.gz", max_rows=rows)
    (xt, yt), val = trial_train.split(x, y, c.val_fraction, c.validation_seed)
    caller_policy = keras.mixed_precision.global_policy()
    policy = trial_train.use_hardware(c)  # the trial's own choice, printed as the trial prints it
    logdir = out / f"profile-{policy}"
    try:
        model = build_model(c)
        model.compile(optimizer=make_optimizer(c.optimizer, c.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        fit = dict(x=trial_train.dataset(xt, yt, c.batch_size, shuffle_seed=c.seed),
                   steps_per_epoch=math.ceil(len(xt) / c.batch_size),
                   validation_data=trial_train.dataset(*val, c.batch_size, shuffle_seed=None), verbose=0)
        model.fit(epochs=1, **fit)
        shutil.rmtree(logdir, ignore_errors=True)
        tf.profiler.experimental.start(str(logdir))
        t0 = time.perf_counter()
        model.fit(initial_epoch=1, epochs=2, **fit)
        wall = time.perf_counter() - t0
        tf.profiler.experimental.stop()
    finally:
        keras.mixed_precision.set_global_policy(caller_policy)
    xplane = sorted(logdir.rglob("*.xplane.pb"))[-1]
    raw, ok = plugin.xspace_to_tools_data([str(xplane)], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"{xplane}: TensorFlow's profiler could not read its own trace")
    table = json.loads(raw)[0]
    cols = [col["id"] for col in table["cols"]]
    ops = [dict(zip(cols, [cell.get("v") if cell else None for cell in row["c"]])) for row in table["rows"]]
    by_type: collections.Counter = collections.Counter()
    for op in ops:
        if op["type"] != "IDLE":
            by_type[op["type"]] += op["total_self_time"] / 1e6
    busy = sum(by_type.values())
    groups: collections.Counter = collections.Counter()
    for op_type, seconds in by_type.items():
        groups[next(name for name, pattern in PROFILE_GROUPS if re.search(pattern, op_type))] += seconds
    return {"precision": policy, "rows": len(xt), "validation_rows": len(val[0]), "batch_size": c.batch_size,
            "epoch_wall_s": round(wall, 2), "images_per_s": round(len(xt) / wall, 1),
            "op_self_s": round(busy, 2), "trace": str(xplane),
            "groups": {name: round(100 * seconds / busy, 1) for name, seconds in groups.most_common()},
            "top_op_types": {name: round(100 * seconds / busy, 1) for name, seconds in by_type.most_common(8)}}


def _tune(experiment: str, data: Path, out: Path, trials: int, parallel: int, trial_args: list[str],
          random_state: str | None = None) -> tuple[dict, float]:
    from pipeline.katib.experiment import load_experiment
    from pipeline.local.controller import run_experiment

    exp = load_experiment(REPO / "experiments" / experiment)
    if random_state is not None:  # same seed, same proposals: the runs differ only in early stopping
        settings = [s for s in exp["spec"]["algorithm"].get("algorithmSettings") or [] if s["name"] != "random_state"]
        exp["spec"]["algorithm"]["algorithmSettings"] = [*settings, {"name": "random_state", "value": random_state}]
    t0 = time.perf_counter()
    result = run_experiment(exp, out, {"/data": str(data)}, max_trial_count=trials,
                            parallel_trial_count=parallel, trial_args=trial_args, progress=False)
    return result, time.perf_counter() - t0


def _trial_rows(out: Path) -> list[dict]:
    import csv

    with (out / "trials.csv").open() as fh:
        return sorted(csv.DictReader(fh), key=lambda r: r["end"] or "~")


def bench_overhead(data: Path, trials: int, rows: int, out: Path) -> dict:
    """Dry-run wall time vs the trials' own durations vs the same commands run by hand, one at a time."""
    from pipeline.katib.experiment import Experiment
    from pipeline.katib.render import trial_argv

    trial_args = ["--epochs=1", f"--max-rows={rows}"]
    shutil.rmtree(out / "overhead", ignore_errors=True)
    run_trial(["--data", str(data / "train.csv.gz"), "--epochs", "1", "--max-rows", "64"])  # warm the CSV cache
    result, wall = _tune("random.yaml", data, out / "overhead", trials, 1, trial_args)
    own = sum(float(r["duration_s"]) for r in _trial_rows(out / "overhead"))
    spec = result["spec"]
    t0 = time.perf_counter()
    for row in _trial_rows(out / "overhead"):
        assignments = {p["name"]: row[p["name"]] for p in spec["parameters"]}
        argv = trial_argv(Experiment(result), assignments)
        argv = [a.replace("/data/", f"{data}/") for a in argv[3:]] + trial_args  # drop `python -m trial`
        run_trial(argv)
    by_hand = time.perf_counter() - t0
    return {"trials": trials, "rows_per_trial": rows, "dry_run_wall_s": round(wall, 1),
            "sum_trial_durations_s": round(own, 1), "by_hand_wall_s": round(by_hand, 1),
            "overhead_vs_trial_durations": round(wall / own - 1, 3), "overhead_vs_by_hand": round(wall / by_hand - 1, 3)}


def _trial_reports(out: Path) -> list[list[dict]]:
    """Each trial's metric reports, trials in completion order."""
    trials = []
    for row in _trial_rows(out):
        log = out / "trials" / row["name"] / "trial.log"
        trials.append([parse_line(line) for line in log.read_text().splitlines() if line.startswith("epoch=")]
                      if log.exists() else [])
    return trials


def _epochs_to_target(out: Path, target: float) -> tuple[int | None, int]:
    """Epochs spent (trials in completion order) until a report reaches `target`, and epochs in all."""
    spent, reached = 0, None
    for reports in _trial_reports(out):
        for report in reports:
            spent += 1
            if reached is None and report.get("val_accuracy", 0) >= target:
                reached = spent
    return reached, spent


def replay(curves: list[list[float]], target: float, settings, stop: bool) -> tuple[int | None, int]:
    """Run recorded val_accuracy curves one trial at a time, with or without the medianstop rule and check the
    dry-run applies (pipeline/medianstop.py): epochs spent until a report reaches `target`, and epochs in all."""
    from pipeline.katib.medianstop import StopCheck, threshold

    reached, spent, succeeded = None, 0, []
    for curve in curves:
        rule = threshold(succeeded, settings) if stop else None
        check = StopCheck(rule, True, settings.start_step) if rule is not None else None
        seen = []
        for value in curve:
            spent += 1
            seen.append(value)
            if reached is None and value >= target:
                reached = spent
            if check and check.report(value):
                break
        else:
            succeeded.append(seen)
    return reached, spent


def replay_orders(curves: list[list[float]], target: float, settings, orders: int, seed: int) -> dict:
    """Mean epochs to `target` over `orders` random orders of the same trials, without and with medianstop.

    One run's figure hangs on where its first good trial happens to fall. A trial's val_accuracy curve does
    not depend on when it runs (seeded), so replaying the recorded curves of plain random search in many
    orders gives the expected figure. A medianstop order whose good trials were all stopped counts as missed."""
    import random

    rng, plain, stopped, missed = random.Random(seed), [], [], 0
    for _ in range(orders):
        order = rng.sample(curves, len(curves))
        a, b = replay(order, target, settings, False)[0], replay(order, target, settings, True)[0]
        if a is None:  # the target is beyond every recorded trial: no order reaches it
            return {"orders": orders, "reachable": False}
        plain.append(a)
        if b is None:
            missed += 1
        else:
            stopped.append(b)
    result = {"orders": orders, "reachable": True, "random_mean_epochs": round(sum(plain) / orders, 2),
              "medianstop_missed_orders": missed}
    if stopped:
        result["medianstop_mean_epochs"] = round(sum(stopped) / len(stopped), 2)
        result["speedup_vs_random"] = round(result["random_mean_epochs"] / result["medianstop_mean_epochs"], 2)
    return result


REPLAY_ORDERS = 2000

# A target of "best": the best val_accuracy plain random search reaches in its budget, less this margin
# (about 1.5 validation images at 3,000 rows), because CPU training is not bit-for-bit repeatable.
BEST_MARGIN = 0.005


HYPERBAND_FIRST_BRACKET = 10  # hyperband.yaml on Katib v0.19: 9 trials of 1 epoch, the best at 9


def bench_efficiency(data: Path, trials: int, rows: int, epochs: int, target: float | None, out: Path,
                     random_state: int = 7, resume: bool = False, hyperband_trials: int = HYPERBAND_FIRST_BRACKET) -> dict:
    """Random search without early stopping vs with medianstop (same budget and random_state, so the
    same proposals) vs hyperband's first bracket. `target` None: random search's best less BEST_MARGIN,
    i.e. how many epochs each method spends to find a model as good as the best plain random search finds."""
    result = {"trials": trials, "rows_per_trial": rows, "epochs_per_trial": epochs, "random_state": random_state,
              "target_val_accuracy": target, "resumed": resume}  # resumed: wall_s counts only what ran now
    for name, experiment in [("random", "random.yaml"), ("medianstop", "random-medianstop.yaml"),
                             ("hyperband", "hyperband.yaml")]:
        folder = out / f"efficiency-{name}"
        if not resume:  # with resume the dry-run keeps the finished trials in `folder` and runs only the rest
            shutil.rmtree(folder, ignore_errors=True)
        args = [f"--max-rows={rows}"] + ([] if name == "hyperband" else [f"--epochs={epochs}"])
        # hyperband: its first bracket instead of `trials` (fewer only to test the section itself).
        budget, parallel = (hyperband_trials, 9) if name == "hyperband" else (trials, 1)
        _, wall = _tune(experiment, data, folder, budget, parallel, args,
                        random_state=None if name == "hyperband" else str(random_state))
        if result["target_val_accuracy"] is None:  # the random run comes first
            best = max((r.get("val_accuracy", 0) for reports in _trial_reports(folder) for r in reports), default=0)
            result["target_val_accuracy"] = round(best - BEST_MARGIN, 4)
            result["target_rule"] = f"best val_accuracy of plain random search ({best}) - {BEST_MARGIN}"
        reached, spent = _epochs_to_target(folder, result["target_val_accuracy"])
        result[name] = {"epochs_to_target": reached, "epochs_total": spent, "wall_s": round(wall, 1)}
    from pipeline.katib.experiment import load
    from pipeline.katib.medianstop import MedianStopSettings

    settings = MedianStopSettings.from_experiment(load(REPO / "experiments" / "random-medianstop.yaml"))
    curves = [[r.get("val_accuracy", 0) for r in reports] for reports in _trial_reports(out / "efficiency-random")]
    result["over_orders"] = replay_orders(curves, result["target_val_accuracy"], settings, REPLAY_ORDERS, random_state)
    # The check on the replay: in random search's own order it must spend what the real medianstop run spent.
    # (target 2.0: no accuracy reaches it, so every epoch counts)
    result["over_orders"]["own_order_replayed_epochs_total"] = replay(curves, 2.0, settings, True)[1]
    # Would other medianstop settings do better on these trials? The same replay for each (Katib's minimums: 1).
    result["medianstop_settings_sweep"] = [
        {"start_step": step, "min_trials_required": need,
         **{k: v for k, v in replay_orders(curves, result["target_val_accuracy"], MedianStopSettings(need, step),
                                           REPLAY_ORDERS, random_state).items() if k != "orders"}}
        for step in (1, 2, 3) for need in (1, 2, 3)]
    base = result["random"]["epochs_to_target"]
    for name in ("medianstop", "hyperband"):
        mine = result[name]["epochs_to_target"]
        result[name]["speedup_vs_random"] = round(base / mine, 2) if base and mine else None
    return result


ASHA_ORDERS = 200


def replay_asha(curves: list[list[float]], target: float, plan) -> dict:
    """Recorded val_accuracy curves (one per configuration, plan.max_resource epochs each, in the order given)
    run through ASHA's own rule (`pipeline.suggestion.asha.suggest`, one free slot at a time): a new configuration
    is the next recorded curve, run to the lowest rung; a promotion continues a curve from the lower rung's
    epochs, as a trial resumed from its checkpoint does. Ends when ASHA asks for a new configuration and none is
    left (it asks for one only when nothing can be promoted). Epochs until a report reaches `target`, epochs in
    all, and the best report seen. A trial's objective is its last report (asha.yaml's metricStrategy `latest`:
    a resumed trial prints only the epochs it trains, so its last report is the value at the rung's budget)."""
    from pipeline.suggestion.asha import SUCCEEDED, TrialView, suggest

    rungs = plan.rungs
    trials: list[TrialView] = []
    promoted: set[str] = set()
    spent, reached, best, used = 0, None, 0.0, 0
    while True:
        # No search space: the replay supplies each new configuration itself (the next recorded curve).
        (decision,), promoted = suggest(plan, [], True, trials, 1, len(trials), promoted)
        if decision.promoted_from is None:
            if used == len(curves):
                break
            config, start, stop = used, 0, rungs[0]
            used += 1
        else:
            config = int(decision.assignments["config"])
            start, stop = rungs[decision.rung - 1], rungs[decision.rung]
        reports = curves[config][start:stop]
        for value in reports:
            spent += 1
            if reached is None and value >= target:
                reached = spent
        best = max([best, *reports])
        trials.append(TrialView(f"t{len(trials)}", {"config": str(config), plan.resource_name: str(stop)},
                                SUCCEEDED, str(reports[-1])))
    return {"epochs_to_target": reached, "epochs_total": spent, "best": best, "trials": len(trials)}


def _spread(values: list[float]) -> dict:
    import statistics

    return {"mean": round(statistics.fmean(values), 2), "stdev": round(statistics.pstdev(values), 2),
            "min": min(values), "max": max(values)}


def bench_asha(data: Path, trials: int, rows: int, out: Path, random_state: int = 7, orders: int = ASHA_ORDERS,
               resume: bool = False, run_trials: int = 0) -> dict:
    """ASHA (experiments/asha.yaml's rungs) vs plain random search vs random + medianstop on the same
    configurations: plain random search records `trials` configurations trained to asha's max_resource epochs,
    then each of `orders` random orders of them is replayed three ways (random: every configuration to the
    end; medianstop: Katib's rule from random-medianstop.yaml; asha: replay_asha). Target: plain random
    search's best less BEST_MARGIN. `run_trials` > 0 also runs experiments/asha.yaml for real with the same
    random_state (its own proposals, trials resuming from checkpoints) as a check on the replay."""
    import random

    from pipeline.katib.algorithms import asha_plan
    from pipeline.katib.experiment import load
    from pipeline.katib.medianstop import MedianStopSettings

    asha_exp = load(REPO / "experiments" / "asha.yaml")
    plan = asha_plan(asha_exp.algorithm_settings, asha_exp.parameters, asha_exp.name)
    folder = out / "asha-random"
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)
    _, wall = _tune("random.yaml", data, folder, trials, 1, [f"--max-rows={rows}", f"--epochs={plan.max_resource}"],
                    random_state=str(random_state))
    curves = [[r.get("val_accuracy", 0.0) for r in reports] for reports in _trial_reports(folder)]
    curves = [c for c in curves if len(c) == plan.max_resource]  # failed trials have no whole curve
    best = max(max(c) for c in curves)
    target = round(best - BEST_MARGIN, 4)
    settings = MedianStopSettings.from_experiment(load(REPO / "experiments" / "random-medianstop.yaml"))
    rng = random.Random(random_state)
    per_order = {"random": [], "medianstop": [], "asha": []}
    asha_totals, asha_best, missed = [], [], {"medianstop": 0, "asha": 0}
    for _ in range(orders):
        order = rng.sample(curves, len(curves))
        per_order["random"].append(replay(order, target, settings, False)[0])
        stopped = replay(order, target, settings, True)[0]
        asha = replay_asha(order, target, plan)
        asha_totals.append(asha["epochs_total"])
        asha_best.append(asha["best"])
        for name, value in (("medianstop", stopped), ("asha", asha["epochs_to_target"])):
            if value is None:
                missed[name] += 1
            else:
                per_order[name].append(value)
    result = {"configurations": len(curves), "rows_per_trial": rows, "rungs": list(plan.rungs), "eta": plan.eta,
              "random_state": random_state, "orders": orders, "target_val_accuracy": target,
              "target_rule": f"best val_accuracy of plain random search ({best}) - {BEST_MARGIN}",
              "record_wall_s": round(wall, 1), "resumed": resume,
              "epochs_total": {"random": len(curves) * plan.max_resource, "asha": _spread(asha_totals)},
              "best_val_accuracy": {"random": best, "asha": _spread(asha_best)},
              "missed_orders": missed}
    for name, values in per_order.items():
        if values:
            result[name] = _spread(values)
    for name in ("medianstop", "asha"):
        if name in result:
            result[name]["speedup_vs_random"] = round(result["random"]["mean"] / result[name]["mean"], 2)
    if run_trials:
        run_folder = out / "asha-run"
        if not resume:
            shutil.rmtree(run_folder, ignore_errors=True)
        _, run_wall = _tune("asha.yaml", data, run_folder, run_trials, 1, [f"--max-rows={rows}"],
                            random_state=str(random_state))
        reached, spent = _epochs_to_target(run_folder, target)
        result["real_asha_run"] = {"trials": run_trials, "epochs_to_target": reached, "epochs_total": spent,
                                   "wall_s": round(run_wall, 1)}
    return result


def serve_model(out: Path, rows: int = 1000) -> Path:
    """A SavedModel of the trial's default model, as `katib-digits export` writes it for KServe. One epoch on
    the sample's first `rows` rows: the serving path's cost is the architecture's, not the weights'."""
    model, saved = out / "serve-model", out / "serve-saved-model"
    for folder in (model, saved):
        shutil.rmtree(folder, ignore_errors=True)
    run_trial(["--data", str(SAMPLE / "train.csv.gz"), "--max-rows", str(rows), "--val-fraction", "0",
               "--epochs", "1", "--model-out", str(model)], log=out / "serve-model.log")
    subprocess.run([sys.executable, "-m", "pipeline.cli", "export", "--model", str(model), "--out", str(saved)],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    return saved


def request_bodies(batch: int, rows: int = 500) -> list[bytes]:
    """V1 bodies of `batch` real test rows each (the sample's test.csv.gz, 784 pixels a row), encoded once."""
    import csv
    import gzip

    with gzip.open(SAMPLE / "test.csv.gz", "rt") as fh:
        reader = csv.reader(fh)
        next(reader)  # the header
        pixels = [[int(v) for v in row] for _, row in zip(range(rows), reader)]
    return [json.dumps({"instances": pixels[i:i + batch]}).encode() for i in range(0, len(pixels) - batch + 1, batch)]


def load(port: int, bodies: list[bytes], clients: int, seconds: float, max_requests: int,
         path: str = "/v1/models/digits:predict", timeout: float = 30.0) -> dict:
    """`clients` threads POSTing `bodies` in turn, a new connection each (the server speaks HTTP/1.0), until
    `seconds` have passed or `max_requests` have been sent. Every answer's status and latency, every failure."""
    import collections
    import http.client
    import threading

    lock, sent = threading.Lock(), [0]
    answers: list[tuple[int, float]] = []
    failures: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        mine, i = [], k
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            body, i = bodies[i % len(bodies)], i + clients
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            t0 = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                mine.append((answer.status, time.perf_counter() - t0))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures[type(e).__name__] += 1
            finally:
                connection.close()
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 10)
    wall = time.perf_counter() - t0
    latencies = sorted(seconds for _, seconds in answers)

    def percentile(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

    return {"clients": clients, "seconds": seconds, "max_requests": max_requests, "wall_s": round(wall, 2),
            "requests": sent[0], "answered": len(answers), "requests_per_s": significant(len(answers) / wall),
            "statuses": dict(sorted(collections.Counter(status for status, _ in answers).items())),
            "failures": dict(failures),
            "latency_ms": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
                           "max": percentile(1.0)}}


def _proc_status(pid: int) -> dict[str, int]:
    """The process's resident memory (now and its peak, MiB) and threads, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024), "peak_rss_mib": round(
        int(fields["VmHWM"].split()[0]) / 1024), "threads": int(fields["Threads"])}


def bench_serve(out: Path, clients: int, seconds: float, max_requests: int, batch: int = 1,
                model: Path | None = None) -> dict:
    """`katib-digits serve` (its defaults, its own process) on loopback under `load`: warmed up with 20
    requests, then loaded; its memory and threads read before, every half second during, and after."""
    import signal
    import threading

    from pipeline.serving.server import REQUEST_TIMEOUT, WAITING, WORKERS

    model = model or serve_model(out)
    bodies = request_bodies(batch)
    log = out / "serve.log"
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model), "--port", "0"]
    with log.open("w") as err:
        server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        started = time.monotonic()
        while not (bound := re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())):
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit(f"benchmark: serve: the server did not start; see {log}")
            time.sleep(0.2)
        port = int(bound.group(1))
        warm = load(port, bodies, clients=1, seconds=120, max_requests=20)
        if warm["statuses"] != {200: 20}:
            raise SystemExit(f"benchmark: serve: the warm-up got {warm['statuses']} {warm['failures']}; see {log}")
        before, during, done = _proc_status(server.pid), [], threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                during.append(_proc_status(server.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        result = load(port, bodies, clients, seconds, max_requests)
        done.set()
        watcher.join()
        after = _proc_status(server.pid)
    finally:
        server.send_signal(signal.SIGINT)  # serve's Ctrl-C
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {**result, "batch": batch, "model": str(model), "server": " ".join(["katib-digits", *command[3:]]),
            "server_limits": {"workers": WORKERS, "waiting": WAITING, "request_timeout_s": REQUEST_TIMEOUT},
            "rss_mib": {"before": before["rss_mib"], "max_during": max((d["rss_mib"] for d in during),
                                                                       default=after["rss_mib"]),
                        "after": after["rss_mib"], "peak_since_start": after["peak_rss_mib"]},
            "threads": {"before": before["threads"], "max_during": max((d["threads"] for d in during),
                                                                       default=after["threads"]),
                        "after": after["threads"]}}


def accelerators() -> list[str]:
    """GPUs TensorFlow can use here; none with the tensorflow-cpu this project pins (the Dockerfile's GPU
    build installs tensorflow[and-cuda], and this script then times the GPU the same way)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def summary_rows(report: dict) -> list[tuple[str, str]]:
    """One (figure, value) row per headline number of the sections that ran."""
    rows = [("machine", f"{report.get('machine')}, GPUs: {', '.join(report.get('accelerators') or []) or 'none'}")]
    if t := report.get("throughput"):
        rows.append(("trial images/s vs bare model.fit", f"{t['trial_images_per_s']} vs {t['bare_keras_images_per_s']} "
                                                         f"(ratio {t['ratio_trial_vs_bare']}, target >= 0.95)"))
    if f := report.get("flops"):
        rows.append(("fp32 matmul GFLOP/s", str(f["matmul_gflops"])))
        if "trial_effective_gflops" in f:
            rows.append(("trial effective GFLOP/s", f"{f['trial_effective_gflops']} (ratio {f['ratio_trial_vs_matmul']})"))
    if pr := report.get("precision"):
        other = pr["compared"]
        rows.append((f"matmul GFLOP/s float32 / {other}", f"{pr['matmul_gflops']['float32']} / "
                                                           f"{pr['matmul_gflops'][other]}"))
        rows.append(("--precision auto here", f"{pr['auto_picks']} ({pr['auto_because']})"))
        for run in pr["runs"]:
            f32, low = run["float32"], run[other]
            rows.append((f"images/s float32 vs {other}, batch {run['batch_size']}",
                         f"{f32['images_per_s']} vs {low['images_per_s']} ({run['ratio_vs_float32']}x); "
                         f"of matmul {f32['of_matmul']} / {low['of_matmul']}; per CPU second "
                         f"{f32['images_per_cpu_s']} vs {low['images_per_cpu_s']} ({run['cpu_ratio_vs_float32']}x)"))
        first = pr["runs"][0]["batch_size"]
        for run in pr["runs"][1:]:
            rows.append((f"images/s float32 at batch {first} vs {other} at batch {run['batch_size']}",
                         f"{run['ratio_vs_float32_first_batch']}x; per CPU second "
                         f"{run['cpu_ratio_vs_float32_first_batch']}x"))
    if pf := report.get("profile"):
        rows.append((f"one epoch's op time ({pf['precision']}, TF profiler)", ", ".join(f"{k} {v} %" for k, v in pf["groups"].items())
                     + f" (of {pf['op_self_s']} s op time; epoch {pf['epoch_wall_s']} s wall, {pf['images_per_s']} "
                       f"images/s under the profiler, {pf['rows']} rows)"))
    if o := report.get("overhead"):
        rows.append(("dry-run overhead per trial", f"{100 * o['overhead_vs_trial_durations']:.1f} % vs the trials' own "
                                                   f"durations, {100 * o['overhead_vs_by_hand']:.1f} % vs by hand "
                                                   f"(target < 10 %)"))
    if e := report.get("efficiency"):
        for name in ("random", "medianstop", "hyperband"):
            r = e[name]
            speedup = f", {r['speedup_vs_random']}x vs random" if r.get("speedup_vs_random") else ""
            rows.append((f"epochs to val_accuracy {e['target_val_accuracy']}: {name}",
                         f"{r['epochs_to_target'] or 'not reached'} ({r['epochs_total']} in all){speedup}"))
        if (o := e.get("over_orders")) and o.get("reachable"):
            ms = (f"{o['medianstop_mean_epochs']}, {o['speedup_vs_random']}x" if "medianstop_mean_epochs" in o
                  else "never reached")
            rows.append((f"the same, mean over {o['orders']} orders of random's trials",
                         f"random {o['random_mean_epochs']}, medianstop {ms} "
                         f"(medianstop missed the target in {o['medianstop_missed_orders']} orders)"))
            sweep = [r for r in e.get("medianstop_settings_sweep", []) if r.get("speedup_vs_random")]
            if sweep:
                top = max(sweep, key=lambda r: r["speedup_vs_random"])
                rows.append(("the same, best medianstop setting", f"start_step {top['start_step']}, min_trials_required "
                                                                   f"{top['min_trials_required']}: {top['speedup_vs_random']}x "
                                                                   f"(missed in {top['medianstop_missed_orders']} orders)"))
            if "own_order_replayed_epochs_total" in o:
                rows.append(("check: replay in the run's own order", f"{o['own_order_replayed_epochs_total']} epochs in "
                                                                      f"all (the medianstop run: "
                                                                      f"{e['medianstop']['epochs_total']})"))
    if h := report.get("asha"):
        def fig(d: dict) -> str:
            return f"{d['mean']} (sd {d['stdev']}, {d['min']}-{d['max']})"
        what = f"epochs to val_accuracy {h['target_val_accuracy']} over {h['orders']} orders of {h['configurations']} configs"
        for name in ("random", "medianstop", "asha"):
            if name in h:
                speedup = f", {h[name]['speedup_vs_random']}x vs random" if "speedup_vs_random" in h[name] else ""
                missed = f"; missed in {h['missed_orders'][name]} orders" if h["missed_orders"].get(name) else ""
                rows.append((f"{what}: {name}", f"{fig(h[name])}{speedup}{missed}"))
        rows.append(("asha epochs in all / best val_accuracy", f"{fig(h['epochs_total']['asha'])} (random "
                                                               f"{h['epochs_total']['random']}) / "
                                                               f"{fig(h['best_val_accuracy']['asha'])} (random "
                                                               f"{h['best_val_accuracy']['random']})"))
        if r := h.get("real_asha_run"):
            rows.append(("asha.yaml run for real (own proposals)", f"{r['epochs_to_target'] or 'not reached'} epochs to "
                                                                   f"target, {r['epochs_total']} in all, "
                                                                   f"{r['wall_s']} s"))
    if a := report.get("accuracy"):
        low, high = a["ensemble_val_accuracy_ci95"]
        rows.append(("retrained default, 10 % hold-out", f"{a['ensemble_val_accuracy']:.4f} (95 % interval {low:.4f}-"
                                                         f"{high:.4f}; {a['members']} x "
                                                         f"{a['epochs_per_member']} epochs; members "
                                                         + ", ".join(f"{v:.4f}" for v in a["member_final_val_accuracy"])
                                                         + ")"))
        rows.append(("retrained default, time", f"{a['wall_s']:.0f} s wall, {a['cpu_s']:.0f} s CPU"))
        rows.append(("retrained default, hold-out errors", f"{len(a['errors'])} ({a['confident_errors']} with "
                                                           f"p(label) < {CONFIDENT}, {a['errors_every_member_makes']} "
                                                           f"made by every member); {a['errors_picture']}"))
    if sv := report.get("serve"):
        lat = sv["latency_ms"]
        rows.append((f"serve: {sv['clients']} clients, {sv['batch']} image(s) a request, V1",
                     f"{sv['requests_per_s']} requests/s over {sv['wall_s']} s; latency p50 {lat['p50']} ms, "
                     f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"))
        rss, threads = sv["rss_mib"], sv["threads"]
        rows.append(("serve: answers, server memory and threads",
                     f"{sv['statuses']}, failures {sv['failures'] or 'none'}; RSS {rss['before']} -> "
                     f"{rss['after']} MiB (max {rss['max_during']} during); threads {threads['before']} -> "
                     f"{threads['after']} (max {threads['max_during']})"))
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


SECTIONS = {"throughput": None, "flops": None, "precision": None, "profile": None, "overhead": None, "efficiency": None,
            "asha": None, "accuracy": None, "serve": None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with Kaggle's train.csv.gz (default ../shared/...)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--accuracy-epochs", type=int, default=0, help="epochs per member (0 = the trial's default)")
    p.add_argument("--accuracy-members", type=int, default=RETRAIN_ENSEMBLE,
                   help=f"ensemble size of the retrained default (default {RETRAIN_ENSEMBLE}, as the pipeline retrains)")
    p.add_argument("--accuracy-split-seed", type=int, default=0,
                   help="seed of the 10 %% hold-out (default 0); another seed measures the same recipe on other rows")
    p.add_argument("--accuracy-precision", choices=PRECISIONS, default=None,
                   help="the members' --precision (default: the trial's own default)")
    p.add_argument("--accuracy-flags", default="",
                   help="more trial flags for every member, one string: another recipe's retrain, e.g. "
                        "--accuracy-flags='--batch-size 128 --learning-rate 0.0014' (default: none)")
    p.add_argument("--resume", action="store_true",
                   help="accuracy: reuse members already trained in --out by the same command (their recorded times "
                        "count); efficiency: keep the trials already finished in --out (the dry-run resumes)")
    p.add_argument("--throughput-rows", type=int, default=8000)
    p.add_argument("--precision-rows", type=int, default=7560)
    p.add_argument("--precision-epochs", type=int, default=2)
    p.add_argument("--precision-batch-sizes", type=int, nargs="+", default=[64, 256])
    p.add_argument("--profile-rows", type=int, default=7560)
    p.add_argument("--profile-precision", choices=PRECISIONS, default="auto",
                   help="the profiled epoch's --precision (default auto, what a trial here trains in)")
    p.add_argument("--overhead-trials", type=int, default=3)
    p.add_argument("--overhead-rows", type=int, default=0, help="rows per overhead trial (0 = all 42,000)")
    p.add_argument("--efficiency-trials", type=int, default=12)
    p.add_argument("--efficiency-rows", type=int, default=3000)
    p.add_argument("--efficiency-random-state", type=int, default=7,
                   help="random search's random_state, the same with and without medianstop (default 7)")
    p.add_argument("--efficiency-epochs", type=int, default=8, help="epochs per trial (the Experiments' own 8)")
    p.add_argument("--efficiency-target", default="best",
                   help=f"val_accuracy target, or 'best': plain random search's best less {BEST_MARGIN}")
    p.add_argument("--asha-trials", type=int, default=27, help="configurations plain random search records (default 27)")
    p.add_argument("--asha-rows", type=int, default=2000)
    p.add_argument("--asha-random-state", type=int, default=7)
    p.add_argument("--asha-orders", type=int, default=ASHA_ORDERS, help=f"replayed orders (default {ASHA_ORDERS})")
    p.add_argument("--asha-run-trials", type=int, default=0,
                   help="also run experiments/asha.yaml for real with this many trials (0: replay only)")
    p.add_argument("--serve-clients", type=int, default=48, help="concurrent clients of the serve section")
    p.add_argument("--serve-seconds", type=float, default=30.0, help="how long the serve section loads the server")
    p.add_argument("--serve-max-requests", type=int, default=100_000, help="most requests it sends in all")
    p.add_argument("--serve-batch", type=int, default=1, help="test rows per request")
    p.add_argument("--serve-model", type=Path, default=None,
                   help="a SavedModel folder to serve (default: the trial's default model, one epoch on the sample)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    accuracy_flags = accuracy_recipe(args.accuracy_flags)
    if set(args.only) - {"serve"} and not (args.data / "train.csv.gz").exists():  # serve reads data/sample
        raise SystemExit(f"benchmark: {args.data / 'train.csv.gz'}: not found (pass --data DIR with Kaggle's files)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "python": platform.python_version(), "accelerators": accelerators()}
    if "throughput" in args.only:
        report["throughput"] = bench_throughput(args.data, args.throughput_rows, 2, args.out)
    if "flops" in args.only:
        report["flops"] = bench_flops(report.get("throughput"))
    if "precision" in args.only:
        report["precision"] = bench_precision(args.data, args.precision_rows, args.precision_epochs,
                                              tuple(args.precision_batch_sizes), args.out)
    if "profile" in args.only:
        report["profile"] = bench_profile(args.data, args.profile_rows, args.out, args.profile_precision)
    if "overhead" in args.only:
        report["overhead"] = bench_overhead(args.data, args.overhead_trials, args.overhead_rows, args.out)
    if "efficiency" in args.only:
        report["efficiency"] = bench_efficiency(args.data, args.efficiency_trials, args.efficiency_rows,
                                                args.efficiency_epochs,
                                                None if args.efficiency_target == "best" else float(args.efficiency_target),
                                                args.out, args.efficiency_random_state, args.resume)
    if "asha" in args.only:
        report["asha"] = bench_asha(args.data, args.asha_trials, args.asha_rows, args.out, args.asha_random_state,
                                    args.asha_orders, args.resume, args.asha_run_trials)
    if "accuracy" in args.only:
        report["accuracy"] = bench_accuracy(args.data, args.accuracy_epochs, args.accuracy_members, args.out, args.resume,
                                            args.accuracy_split_seed, args.accuracy_precision, accuracy_flags)
    if "serve" in args.only:
        report["serve"] = bench_serve(args.out, args.serve_clients, args.serve_seconds, args.serve_max_requests,
                                      args.serve_batch, args.serve_model)
    print_table(summary_rows(report))
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
