"""The trial's contract with Katib: flags, the model, metric lines Katib's collector reads."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE
from trial.cli import build_parser

# Katib's default StdOut filter (Go RE2 in pkg/metricscollector; the same in Python's re).
KATIB_DEFAULT_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
CONTRACT = ("loss", "accuracy", "val_loss", "val_accuracy")


def katib_pairs(line: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in KATIB_DEFAULT_FILTER.finditer(line)}


def test_metric_line_is_read_by_katibs_default_filter():
    from trial.train import format_metrics

    line = format_metrics(3, {"loss": 0.0512, "accuracy": 0.9841, "val_loss": 4.3e-05, "val_accuracy": 0.9872, "lr": 1.0})
    assert line == "epoch=3 loss=0.051200 accuracy=0.984100 val_loss=0.000043 val_accuracy=0.987200"
    assert katib_pairs(line) == {"epoch": 3, "loss": 0.0512, "accuracy": 0.9841, "val_loss": 0.000043, "val_accuracy": 0.9872}


def test_keras_progress_bar_would_not_match():
    # Why the trial prints its own lines: Katib cannot read Keras' `name: value` output.
    assert not set(katib_pairs("1/1 - 0s - loss: 0.2 - accuracy: 0.98")) & set(CONTRACT)


def test_defaults_describe_a_full_training_run():
    args = build_parser().parse_args([])
    assert args.data == SAMPLE / "train.csv.gz"
    assert args.epochs >= 10 and args.augment > 0 and 0 < args.val_fraction < 1 and args.max_rows == 0


@pytest.mark.parametrize("argv,expected", [
    (["--epochs", "-1"], "--epochs: -1 is not a positive integer"),
    (["--epochs", "0"], "--epochs: 0 is not a positive integer"),
    (["--optimizer", "adagradx"], "--optimizer: invalid choice: 'adagradx'"),
    (["--dropout", "1.5"], "--dropout: 1.5 is outside [0, 1)"),
    (["--learning-rate", "0"], "--learning-rate: 0 is not a positive number"),
    (["--lr-decay", "0"], "--lr-decay: 0 is outside (0, 1]"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flags_exit_2_with_a_message(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err


def test_model_shape_and_width_follow_the_flags():
    from trial.model import build_model

    small, wide = build_model(conv_filters=8, dense_units=16), build_model(conv_filters=16, dense_units=16)
    assert small.output_shape == (None, 10) and small.input_shape == (None, 28, 28, 1)
    assert wide.count_params() > small.count_params()
    assert any("random_affine" in layer.name for layer in build_model(augment=0.1).layers)
    assert not any("random" in layer.name for layer in build_model(augment=0).layers)


def test_augmentation_is_one_resampling_in_training_only():
    import numpy as np

    from trial.model import RandomAffine

    x = np.zeros((4, 28, 28, 1), "float32")
    x[:, 10:18, 12:16] = 1.0  # a bar in the middle
    layer = RandomAffine(0.1, seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    moved = np.asarray(layer(x, training=True))
    assert moved.shape == x.shape and not np.array_equal(moved, x)
    # rotation <= 10 degrees, zoom and shift <= 10 %: the ink moves but stays on the canvas
    assert np.all(np.abs(moved.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3)) - 1) < 0.3)
    assert np.array_equal(np.asarray(RandomAffine(0.0, seed=3)(x, training=True)), x)


def test_saved_model_with_augmentation_loads_for_predict(tmp_path):
    import numpy as np

    from pipeline.retrain import load_model
    from trial.model import build_model

    model = build_model(conv_filters=8, dense_units=16, augment=0.1)
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, np.arange(3), epochs=2, verbose=0)  # batch-norm step counts > 0, so the correction applies
    model.save(tmp_path / "m.keras")
    assert np.allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0), model.predict(x, verbose=0))


def test_batch_norm_statistics_are_bias_corrected_after_few_steps():
    import keras
    import numpy as np

    from trial.model import DebiasedBatchNormalization

    x = np.random.default_rng(0).normal(5.0, 2.0, (256, 3)).astype("float32")
    debiased, plain = DebiasedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    for _ in range(3):  # three steps: the initial mean 0 / variance 1 still weigh 0.9 ** 3 = 73 %
        debiased(x, training=True), plain(x, training=True)
    out = keras.ops.convert_to_numpy(debiased(x, training=False))
    assert np.allclose(out.mean(axis=0), 0, atol=1e-3) and np.allclose(out.std(axis=0), 1, atol=1e-2)
    assert np.all(keras.ops.convert_to_numpy(plain(x, training=False)).mean(axis=0) > 1)  # what the correction removes
    for _ in range(300):  # long runs: the correction has vanished, both layers agree
        debiased(x, training=True), plain(x, training=True)
    assert np.allclose(keras.ops.convert_to_numpy(debiased(x, training=False)), keras.ops.convert_to_numpy(plain(x, training=False)), atol=1e-4)


def test_arch_picks_the_down_sampling():
    import keras

    from trial.model import build_model

    strided, pooled = build_model(conv_filters=8, dense_units=16), build_model(conv_filters=8, dense_units=16, arch="pool")
    convs = [layer for layer in strided.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.strides for c in convs] == [(1, 1), (1, 1), (2, 2)] * 2
    assert convs[-1].output.shape[1:3] == (4, 4)  # 28 -> 24 -> 12 -> 8 -> 4
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in strided.layers)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in pooled.layers) == 2
    with pytest.raises(ValueError, match="unknown arch 'wide'"):
        build_model(arch="wide")


def test_unknown_optimizer_is_refused():
    from trial.model import make_optimizer

    with pytest.raises(ValueError, match="unknown optimizer 'adagradx', expected one of adam, adamw, rmsprop, sgd"):
        make_optimizer("adagradx", 0.1)


@pytest.mark.slow
def test_real_trial_end_to_end(tmp_path):
    """A real trial from the command line: metric lines Katib parses, a model that loads and predicts."""
    metrics_file = tmp_path / "metrics.log"
    cmd = [sys.executable, "-m", "trial", "--data", str(SAMPLE / "train.csv.gz"), "--max-rows", "300",
           "--epochs", "2", "--batch-size", "32", "--conv-filters", "8", "--dense-units", "32",
           "--model-out", str(tmp_path / "model"), "--metrics-file", str(metrics_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch=1 ") and lines[1].startswith("epoch=2 ")
    for line in lines:
        pairs = katib_pairs(line)
        assert set(CONTRACT) <= set(pairs) and 0 <= pairs["val_accuracy"] <= 1 and pairs["loss"] > 0
    assert metrics_file.read_text().splitlines() == lines

    import keras
    import numpy as np

    from trial.data import load_test

    model = keras.models.load_model(tmp_path / "model" / "model.keras")
    probs = model.predict(load_test(SAMPLE / "test.csv.gz")[:20].astype("float32"), verbose=0)
    assert probs.shape == (20, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    hparams = json.loads((tmp_path / "model" / "hparams.json").read_text())
    assert hparams["conv_filters"] == 8 and hparams["epochs"] == 2
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(history["val_accuracy"]) == 2


@pytest.mark.slow
def test_nan_loss_ends_the_trial_with_exit_1():
    proc = subprocess.run([sys.executable, "-m", "trial", "--max-rows", "200", "--epochs", "2", "--optimizer", "sgd",
                           "--learning-rate", "1e12", "--conv-filters", "8", "--dense-units", "16"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    assert "loss became NaN or infinite at epoch 1" in proc.stderr and "Traceback" not in proc.stderr
    assert "val_accuracy" not in proc.stdout  # no metric line for a diverged epoch


@pytest.mark.slow
def test_same_seed_same_metrics():
    cmd = [sys.executable, "-m", "trial", "--max-rows", "200", "--epochs", "1", "--conv-filters", "8", "--dense-units", "16"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs)
    assert runs[0].stdout == runs[1].stdout and "val_accuracy=" in runs[0].stdout
