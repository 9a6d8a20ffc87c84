"""Train the CNN on in-memory arrays and report each epoch the way Katib reads it."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# Before TensorFlow's first import, which reads it (ruff allows os.environ ahead of imports).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from trial.checkpoint import Store, key_material
from trial.config import TrialConfig
from trial.hardware import choose_precision, cpu_flags, cpu_limit
from trial.metrics import METRIC_NAMES, format_line
from trial.model import build_model, make_optimizer


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def split(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """Shuffle once with `seed`, then hold out the last `val_fraction` of rows."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    if val_fraction > 0 and n_val == 0:
        raise ValueError(f"--val-fraction {val_fraction} of {len(x)} rows leaves no validation rows")
    if len(x) - n_val < 1:
        raise ValueError(f"{len(x)} rows leave nothing to train on after the validation split")
    train_idx, val_idx = order[: len(x) - n_val], order[len(x) - n_val :]
    return (x[train_idx], y[train_idx]), ((x[val_idx], y[val_idx]) if n_val else None)


def dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None, first_epoch: int = 0
) -> tf.data.Dataset:
    """Batches of (float32 images, labels): one pass in file order, or with `shuffle_seed` an endless
    stream of epochs from `first_epoch` on, each in an order that depends on (seed, epoch) alone, so
    a run resumed at epoch e sees the batches a whole run would have (fit it with steps_per_epoch)."""
    if shuffle_seed is None:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    else:
        images, labels = tf.constant(x), tf.constant(y)

        def epoch_batches(epoch):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(len(x), dtype=tf.int64), seed=tf.stack([tf.constant(shuffle_seed, tf.int64), epoch])
            )
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        ds = (
            tf.data.Dataset.counter(first_epoch)
            .flat_map(epoch_batches)
            .map(lambda rows: (tf.gather(images, rows), tf.gather(labels, rows)))
        )
    return ds.map(lambda a, b: (tf.cast(a, tf.float32), b)).prefetch(tf.data.AUTOTUNE)


class KatibReporter(keras.callbacks.Callback):
    """Prints one metric line per epoch to stdout (and a metrics file, and, with --push-metrics
    inside a Katib pod, to Katib's DB manager for the Push collector); stops on a NaN loss.

    Pushing is asked for, not guessed: Katib's pod webhook sets KATIB_TRIAL_NAME under every
    collector kind, and a push beside the StdOut sidecar would record each epoch twice."""

    def __init__(self, metrics_file: Path | None, push: bool = False):
        super().__init__()
        self.metrics_file = metrics_file
        self.diverged_at: int | None = None
        self.push = push and os.environ.get("KATIB_TRIAL_NAME") is not None
        if push and not self.push:
            print(
                "trial: warning: --push-metrics outside a Katib trial pod (no KATIB_TRIAL_NAME): not pushing",
                file=sys.stderr,
            )
        if metrics_file:
            metrics_file.parent.mkdir(parents=True, exist_ok=True)
            metrics_file.write_text("")

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items() if k in METRIC_NAMES}
        if not all(math.isfinite(v) for v in logs.values()):
            self.diverged_at = epoch + 1
            self.model.stop_training = True
            return
        line = format_line(epoch + 1, logs)
        print(line, flush=True)
        if self.metrics_file:
            with self.metrics_file.open("a") as fh:
                fh.write(line + "\n")
        if self.push:
            self._push(logs)

    def _push(self, logs: dict) -> None:
        try:
            from kubeflow.katib import report_metrics

            report_metrics({k: str(v) for k, v in logs.items()})
        except Exception as exc:  # noqa: BLE001 - stdout stays the source of truth
            print(f"trial: warning: Push collector failed ({exc}); metrics are still on stdout", file=sys.stderr)
            self.push = False


def use_hardware(config: TrialConfig) -> str:
    """Threads matched to the container's CPU limit and the dtype policy `--precision` picks;
    says both on stderr (the trial's first line there). Returns the policy's name."""
    threads = config.threads or cpu_limit()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # TensorFlow already started in this process (a retrain of several members)
        threads = tf.config.threading.get_intra_op_parallelism_threads() or threads
    policy, why = choose_precision(config.precision, cpu_flags(), bool(tf.config.list_physical_devices("GPU")))
    keras.mixed_precision.set_global_policy(policy)
    print(
        f"trial: precision {policy} ({why}), {threads} thread{'' if threads == 1 else 's'}", file=sys.stderr, flush=True
    )
    return policy


def train(config: TrialConfig, x: np.ndarray, y: np.ndarray) -> dict:
    """Fit the model `config` describes; returns the Keras history (one list per metric, epochs 1..--epochs,
    those a checkpoint supplied included)."""
    previous = keras.mixed_precision.global_policy()
    try:
        return _train(config, x, y, use_hardware(config))
    finally:
        # Keras' dtype policy is global: an in-process caller (the retrain, a test) builds its next model in its
        # own policy, not in this trial's (the model trained here keeps its layers' policies).
        keras.mixed_precision.set_global_policy(previous)


def _train(c: TrialConfig, x: np.ndarray, y: np.ndarray, policy: str) -> dict:
    keras.utils.set_random_seed(c.seed)
    (x_train, y_train), val = split(x, y, c.val_fraction, c.validation_seed)
    print(
        f"trial: {len(x_train)} training rows, {len(val[0]) if val else 0} validation rows from {c.data}",
        file=sys.stderr,
    )

    store = Store(c.checkpoint_dir, key_material(c, policy, x, y)) if c.checkpoint_dir else None
    model, done = resume(store, c) if store else (None, {})
    start = len(done.get("loss", []))
    reporter = KatibReporter(c.metrics_file, c.push_metrics)
    if start >= c.epochs:
        # Katib reads this trial's own output only: every epoch a plain run would print, so the objective
        # is there under any metricStrategy (latest, max, min).
        history = {name: values[: c.epochs] for name, values in done.items()}
        for epoch in range(c.epochs):
            reporter.on_epoch_end(epoch, {name: values[epoch] for name, values in history.items()})
        if c.model_out:
            save(model, c, history, c.model_out)
        return history

    if model is None:
        model = build_model(c)
        model.compile(
            optimizer=make_optimizer(c.optimizer, c.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    # Epoch k's rate depends on k alone (not on --epochs), so a resumed run follows the plain run's schedule.
    decay = keras.callbacks.LearningRateScheduler(lambda epoch: c.learning_rate * c.lr_decay**epoch)
    callbacks = [decay, reporter] + ([Checkpointer(store, done, reporter)] if store else [])
    # CPU seconds beside wall seconds: on a shared node (or a VM whose host takes its CPUs away) wall-clock
    # images/s swing with the neighbours; images per CPU second swing less (threads that spin while they
    # wait still count, so not zero).
    started, cpu_started = time.perf_counter(), time.process_time()
    history = model.fit(
        dataset(x_train, y_train, c.batch_size, shuffle_seed=c.seed, first_epoch=start),
        steps_per_epoch=math.ceil(len(x_train) / c.batch_size),
        validation_data=dataset(*val, c.batch_size, shuffle_seed=None) if val else None,
        initial_epoch=start,
        epochs=c.epochs,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if reporter.diverged_at is not None:
        raise TrainingDiverged(
            f"loss became NaN or infinite at epoch {reporter.diverged_at} "
            f"(learning rate {c.learning_rate:g} with {c.optimizer} is probably too high)"
        )
    epochs_run = len(history.history.get("loss", []))
    images = epochs_run * len(x_train)
    print(
        f"trial: trained {epochs_run} epoch{'' if epochs_run == 1 else 's'} in {elapsed:.1f} s "
        f"({images / elapsed:.0f} images/s), {cpu:.1f} CPU s ({images / cpu:.0f} images per CPU second)",
        file=sys.stderr,
    )
    full = {name: [*done.get(name, [])[:start], *values] for name, values in history.history.items()}
    if c.model_out:
        save(model, c, full, c.model_out)
    return full


def resume(store: Store, config: TrialConfig) -> tuple[keras.Model | None, dict[str, list[float]]]:
    """The model to continue (None: build a new one) and the history of the epochs it has done; says on
    stderr, in one line, what it found and why a checkpoint is not used."""
    snapshot, why = store.latest()
    if snapshot is None:
        print(f"trial: {why}: training from scratch", file=sys.stderr)
        return None, {}
    epochs, wanted = snapshot.epochs, config.epochs
    if epochs > wanted and config.model_out:
        print(
            f"trial: checkpoint at {snapshot.path} not used (it has {epochs} epochs and --model-out wants the "
            f"model after {wanted}): training from scratch",
            file=sys.stderr,
        )
        return None, {}
    try:
        # Only --model-out needs the model of a finished run; the metric lines come from the history.
        model = store.load_model(snapshot) if epochs < wanted or config.model_out else None
    except ValueError as exc:
        print(f"trial: {exc}: training from scratch", file=sys.stderr)
        return None, {}
    if epochs >= wanted:
        print(
            f"trial: checkpoint at {store.path} has {epochs} epochs: epochs 1..{wanted} reported from its "
            f"history, no training",
            file=sys.stderr,
        )
    else:
        print(f"trial: resumed from {store.path} at epoch {epochs}", file=sys.stderr)
    return model, snapshot.history


class Checkpointer(keras.callbacks.Callback):
    """After each epoch, the run so far into the checkpoint store (not after a NaN loss: a promotion
    must never continue a diverged run). A store that cannot be written costs the checkpoints, not the trial."""

    def __init__(self, store: Store, history: dict[str, list[float]], reporter: KatibReporter):
        super().__init__()
        self.store, self.reporter, self.failed = store, reporter, False
        self.history = {name: list(values) for name, values in history.items()}

    def on_epoch_end(self, epoch, logs=None):
        if self.reporter.diverged_at is not None or self.failed:
            return
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        try:
            self.store.save(self.model, epoch + 1, self.history)
        except OSError as exc:
            print(f"trial: warning: checkpoint not written ({exc}): going on without checkpoints", file=sys.stderr)
            self.failed = True


def save(model: keras.Model, config: TrialConfig, history: dict, out: Path) -> None:
    """model.keras, hparams.json (the whole config) and history.json under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "hparams.json").write_text(json.dumps(config.to_json(), indent=2))
    (out / "history.json").write_text(json.dumps({k: [float(v) for v in vs] for k, vs in history.items()}, indent=2))
