"""throughput: our trial (CSV cache, tf.data, callbacks) against a bare `model.fit` of the same model on
in-memory arrays, images/s each, and the model's forward FLOPs per image (the flops section uses them)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.process import run_trial
from bench.rates import model_forward_flops

ABOUT = "trial images/s vs a bare `model.fit` on in-memory arrays (same model)"
EPOCHS = 2


def measure(data: Path, rows: int, epochs: int, out: Path) -> dict:
    """Our trial (CSV cache, tf.data, callbacks) vs a bare `model.fit` on in-memory arrays, same model."""
    argv = [
        "--data",
        str(data / "train.csv.gz"),
        "--max-rows",
        str(rows),
        "--val-fraction",
        "0",
        "--epochs",
        str(epochs),
        "--seed",
        "0",
        "--precision",
        "float32",
    ]  # the bare fit below is float32
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
    return {
        "rows": rows,
        "epochs": epochs,
        "trial_images_per_s": round(trial["images_per_s"], 1),
        "bare_keras_images_per_s": round(bare, 1),
        "ratio_trial_vs_bare": round(trial["images_per_s"] / bare, 3),
        "forward_mflops_per_image": round(model_forward_flops(model) / 1e6, 2),
    }


def add_arguments(group) -> None:
    group.add_argument("--throughput-rows", type=int, default=8000)


def run(args, report: dict) -> dict:
    return measure(args.data, args.throughput_rows, EPOCHS, args.out)
