"""profile: where one epoch of the default trial's training goes, from TensorFlow's profiler: op self time
grouped by what the ops do."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from trial.hardware import PRECISIONS  # the trial's --precision choices

ABOUT = "where one epoch of the default trial goes: TensorFlow's profiler, op self time grouped by role"


# Op types of TensorFlow's profile, grouped by what they do in one training epoch (the first match wins).
PROFILE_GROUPS = [
    ("convolution, backward", r"Conv2DBackprop"),
    ("convolution, forward", r"Conv2D"),
    ("dense layer", r"MatMul"),
    ("augmentation", r"ImageProjectiveTransform|StatelessRandom"),
    # Casts: the input's one per batch, and mixed precision's between float32 variables and
    # bfloat16/float16 activations (most of them, when a mixed policy trains).
    ("dtype casts", r"^Cast$"),
    ("input pipeline", r"^(Dataset|Iterator|IteratorGetNext|GatherV2)"),
    ("optimizer", r"ResourceApply|AssignAdd|AssignSub|AssignVariable"),
    ("batch norm, dropout, loss, other element-wise", r"."),
]


def measure(data: Path, rows: int, out: Path, precision: str = "auto") -> dict:
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
    assert val is not None  # the trial's default --val-fraction holds rows out
    caller_policy = keras.mixed_precision.global_policy()
    policy = trial_train.use_hardware(c)  # the trial's own choice, printed as the trial prints it
    logdir = out / f"profile-{policy}"
    try:
        model = build_model(c)
        model.compile(
            optimizer=make_optimizer(c.optimizer, c.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        fit = dict(
            x=trial_train.dataset(xt, yt, c.batch_size, shuffle_seed=c.seed),
            steps_per_epoch=math.ceil(len(xt) / c.batch_size),
            validation_data=trial_train.dataset(*val, c.batch_size, shuffle_seed=None),
            verbose=0,
        )
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
    ops = [
        dict(zip(cols, [cell.get("v") if cell else None for cell in row["c"]], strict=True)) for row in table["rows"]
    ]
    by_type: collections.Counter = collections.Counter()
    for op in ops:
        if op["type"] != "IDLE":
            by_type[op["type"]] += op["total_self_time"] / 1e6
    busy = sum(by_type.values())
    groups: collections.Counter = collections.Counter()
    for op_type, seconds in by_type.items():
        groups[next(name for name, pattern in PROFILE_GROUPS if re.search(pattern, op_type))] += seconds
    return {
        "precision": policy,
        "rows": len(xt),
        "validation_rows": len(val[0]),
        "batch_size": c.batch_size,
        "epoch_wall_s": round(wall, 2),
        "images_per_s": round(len(xt) / wall, 1),
        "op_self_s": round(busy, 2),
        "trace": str(xplane),
        "groups": {name: round(100 * seconds / busy, 1) for name, seconds in groups.most_common()},
        "top_op_types": {name: round(100 * seconds / busy, 1) for name, seconds in by_type.most_common(8)},
    }


def add_arguments(group) -> None:
    group.add_argument("--profile-rows", type=int, default=7560)
    group.add_argument(
        "--profile-precision",
        choices=PRECISIONS,
        default="auto",
        help="the profiled epoch's --precision (default auto, what a trial here trains in)",
    )


def run(args, report: dict) -> dict:
    return measure(args.data, args.profile_rows, args.out, args.profile_precision)
