"""The trial's contract with Katib: flags, the model, metric lines Katib's collector reads."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE
from trial.cli import build_parser
from trial.config import TrialConfig
from trial.metrics import (
    KATIB_DEFAULT_FILTER,
    KATIB_METRIC_NAME,
    METRIC_NAMES,
    TRAIN_METRIC_NAMES,
    format_line,
    parse_line,
)


def test_metric_line_is_read_by_katibs_default_filter():
    line = format_line(3, {"loss": 0.0512, "accuracy": 0.9841, "val_loss": 4.3e-05, "val_accuracy": 0.9872, "lr": 1.0})
    assert line == "epoch=3 loss=0.051200 accuracy=0.984100 val_loss=0.000043 val_accuracy=0.987200"
    assert parse_line(line) == {
        "epoch": 3,
        "loss": 0.0512,
        "accuracy": 0.9841,
        "val_loss": 0.000043,
        "val_accuracy": 0.9872,
    }


def test_format_then_parse_round_trips_to_six_decimals():
    logs = {"val_accuracy": 0.98765432, "loss": 1.5e-07, "accuracy": 1.0, "val_loss": 12.3456789}  # any order in
    line = format_line(12, logs)
    assert line.split()[1:] == [f"{name}={logs[name]:.6f}" for name in METRIC_NAMES]  # contract order out
    assert parse_line(line) == {"epoch": 12, **{name: round(logs[name], 6) for name in METRIC_NAMES}}
    train_only = format_line(1, {"loss": 0.25, "accuracy": 0.5})
    assert tuple(parse_line(train_only)) == ("epoch", *TRAIN_METRIC_NAMES)


def test_keras_progress_bar_would_not_match():
    # Why the trial prints its own lines: Katib cannot read Keras' `name: value` output.
    assert not set(parse_line("1/1 - 0s - loss: 0.2 - accuracy: 0.98")) & set(METRIC_NAMES)


def test_parse_line_reads_what_katibs_filter_reads():
    assert KATIB_DEFAULT_FILTER == r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"  # Katib v1beta1, verbatim
    assert parse_line("top-5 = -1.5E-3 a|b=+2 x=.5") == {"top-5": -0.0015, "a|b": 2.0, "x": 0.5}
    assert parse_line("note=abc sign=- dot=. loss=0.3") == {"loss": 0.3}  # empty/sign-only values are not numbers
    assert parse_line("na\u00efve=2 accuracy=\u0663") == {"ve": 2.0}  # RE2's \w and \d are ASCII-only


@pytest.mark.parametrize(
    "name", ["loss", "val_accuracy", "top-5", "a|b", "1st", "a.b", "x y", "\u00e9t\u00e9", "a:b", ""]
)
def test_katib_metric_name_is_what_the_filter_captures(name):
    assert KATIB_DEFAULT_FILTER.startswith(f"({KATIB_METRIC_NAME.pattern})")
    # A name is reported whole exactly when KATIB_METRIC_NAME accepts it.
    assert (parse_line(f"{name}=1") == {name: 1.0}) == bool(KATIB_METRIC_NAME.fullmatch(name))


@pytest.mark.process
def test_metric_and_config_modules_do_not_import_tensorflow():
    code = (
        "import sys, trial.metrics, trial.config, trial.cli; trial.cli.build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_defaults_describe_a_full_training_run():
    args = build_parser().parse_args([])
    assert args.data == SAMPLE / "train.csv.gz"
    assert args.epochs >= 10 and args.augment > 0 and 0 < args.val_fraction < 1 and args.max_rows == 0


def test_every_flag_is_a_config_field_with_the_same_default():
    args = build_parser().parse_args([])
    assert vars(args) == {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    assert TrialConfig.from_args(args) == TrialConfig()
    assert TrialConfig() == TrialConfig(
        dropout=0.4,
        arch="strided",
        epochs=27,
        batch_size=64,
        learning_rate=1e-3,
        optimizer="adam",
        lr_decay=0.925,
        conv_filters=32,
        dense_units=256,
        augment=0.1,
        seed=42,
        val_fraction=0.1,
        max_rows=0,
    )  # today's defaults, pinned


def test_flags_parse_into_a_config():
    args = build_parser().parse_args(["--dropout", "0.2", "--arch", "pool", "--model-out", "out", "--split-seed", "7"])
    config = TrialConfig.from_args(args)
    assert (config.dropout, config.arch, config.split_seed, config.validation_seed) == (0.2, "pool", 7, 7)
    assert config.model_out == Path("out") and TrialConfig().validation_seed == 42
    assert config.to_json()["model_out"] == "out" and json.dumps(config.to_json())  # hparams.json-ready


@pytest.mark.parametrize(
    "bad,expected",
    [
        ({"dropout": 1.5}, "dropout=1.5 is outside [0, 1)"),
        ({"epochs": 0}, "epochs=0 is not a positive integer"),
        ({"learning_rate": float("inf")}, "learning_rate=inf is not a positive number"),
        ({"val_fraction": float("nan")}, "val_fraction=nan is outside [0, 1)"),
        ({"optimizer": "adagradx"}, "unknown optimizer 'adagradx', expected one of adam, adamw, rmsprop, sgd"),
    ],
)
def test_config_refuses_bad_values_by_name(bad, expected):
    with pytest.raises(ValueError) as err:
        TrialConfig(**bad)
    assert str(err.value) == expected


def test_help_lists_every_flag_with_its_default_in_its_group(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrap argparse's line breaks
    assert text.index("data:") < text.index("hyperparameters:") < text.index("output:")
    for f in dataclasses.fields(TrialConfig):
        assert f"--{f.name.replace('_', '-')}" in text and " ".join(f.metadata["help"].split()) in text
    assert "--dropout DROPOUT dropout rate after each conv block and the dense layer (default: 0.4)" in text
    assert "10%); 0 = off (default: 0.1)" in text


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--epochs", "-1"], "--epochs: -1 is not a positive integer"),
        (["--epochs", "0"], "--epochs: 0 is not a positive integer"),
        (["--optimizer", "adagradx"], "--optimizer: invalid choice: 'adagradx'"),
        (["--dropout", "1.5"], "--dropout: 1.5 is outside [0, 1)"),
        (["--learning-rate", "0"], "--learning-rate: 0 is not a positive number"),
        (["--lr-decay", "0"], "--lr-decay: 0 is outside (0, 1]"),
        (["--val-fraction", "nan"], "--val-fraction: nan is outside [0, 1)"),
        (["--epochs", "abc"], "--epochs: invalid int value: 'abc'"),
        (["--arch", "wide"], "--arch: invalid choice: 'wide'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
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


def test_default_model_is_the_default_trials_model():
    """The benchmark's "same model" is build_model(): it must be what `python -m trial` trains by default."""
    import keras

    from trial.model import build_model

    default, model = TrialConfig(), build_model()
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [default.dropout] * 3 and default.dropout == 0.4
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.strides for c in convs] == [(1, 1), (1, 1), (2, 2)] * 2  # arch "strided"
    assert [c.filters for c in convs] == [default.conv_filters] * 3 + [default.conv_filters * 2] * 3
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense[0].units == default.dense_units
    assert model.get_layer("random_affine").strength == default.augment
    assert build_model(default).count_params() == model.count_params()
    assert [layer.rate for layer in build_model(dropout=0.1).layers if isinstance(layer, keras.layers.Dropout)] == [
        0.1
    ] * 3


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

    from pipeline.submission.retrain import load_model
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
    assert np.allclose(
        keras.ops.convert_to_numpy(debiased(x, training=False)),
        keras.ops.convert_to_numpy(plain(x, training=False)),
        atol=1e-4,
    )


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-4), ("mixed_bfloat16", 3e-2)])
def test_fused_batch_norm_trains_as_kerass_own_batch_norm(policy, tolerance):
    """The conv layers' training step runs TensorFlow's fused kernel; it must compute what Keras' op-by-op
    BatchNormalization computes: outputs, gradients and moving statistics (bfloat16: to its 3 digits)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from trial.model import DebiasedBatchNormalization

    caller = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(3.0, 2.0, (16, 6, 6, 8)).astype("float32"))
        weights = tf.constant(rng.normal(size=(16, 6, 6, 8)).astype("float32"))
        fused, plain = DebiasedBatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
        gamma, beta = rng.normal(1.0, 0.3, 8).astype("float32"), rng.normal(0.0, 0.3, 8).astype("float32")
        for layer in (fused, plain):  # the same weights in both
            layer.build(x.shape)
            layer.gamma.assign(gamma), layer.beta.assign(beta)

        def step(layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
            return (y, *tape.gradient(loss, [x, layer.gamma, layer.beta]))

        for _ in range(3):
            got, want = step(fused), step(plain)
        assert got[0].dtype == want[0].dtype == keras.mixed_precision.global_policy().compute_dtype
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(
                np.asarray(tf.cast(a, tf.float32)), np.asarray(tf.cast(b, tf.float32)), rtol=tolerance, atol=tolerance
            )
        for a, b in ((fused.moving_mean, plain.moving_mean), (fused.moving_variance, plain.moving_variance)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
        graph = tf.function(lambda images: fused(images, training=True)).get_concrete_function(x).graph
        assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}  # the fused path, not the fallback
    finally:
        keras.mixed_precision.set_global_policy(caller)


def test_arch_picks_the_down_sampling():
    import keras

    from trial.model import build_model

    strided, pooled = (
        build_model(conv_filters=8, dense_units=16),
        build_model(conv_filters=8, dense_units=16, arch="pool"),
    )
    convs = [layer for layer in strided.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.strides for c in convs] == [(1, 1), (1, 1), (2, 2)] * 2
    assert convs[-1].output.shape[1:3] == (4, 4)  # 28 -> 24 -> 12 -> 8 -> 4
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in strided.layers)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in pooled.layers) == 2
    with pytest.raises(ValueError, match="unknown arch 'wide'"):
        build_model(arch="wide")


def test_unknown_optimizer_is_refused():
    from trial.config import OPTIMIZER_NAMES
    from trial.model import OPTIMIZERS, make_optimizer

    with pytest.raises(ValueError, match="unknown optimizer 'adagradx', expected one of adam, adamw, rmsprop, sgd"):
        make_optimizer("adagradx", 0.1)
    assert sorted(OPTIMIZERS) == sorted(OPTIMIZER_NAMES)  # every --optimizer choice builds


@pytest.mark.process
@pytest.mark.slow
def test_real_trial_end_to_end(tmp_path):
    """A real trial from the command line: metric lines Katib parses, a model that loads and predicts."""
    metrics_file = tmp_path / "metrics.log"
    cmd = [
        sys.executable,
        "-m",
        "trial",
        "--data",
        str(SAMPLE / "train.csv.gz"),
        "--max-rows",
        "300",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--conv-filters",
        "8",
        "--dense-units",
        "32",
        "--model-out",
        str(tmp_path / "model"),
        "--metrics-file",
        str(metrics_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch=1 ") and lines[1].startswith("epoch=2 ")
    for line in lines:
        pairs = parse_line(line)
        assert set(METRIC_NAMES) <= set(pairs) and 0 <= pairs["val_accuracy"] <= 1 and pairs["loss"] > 0
    assert metrics_file.read_text().splitlines() == lines
    # The closing line: wall and CPU cost of the training, 2 epochs x 270 training rows = 540 images.
    import re

    done = re.search(
        r"trained 2 epochs in ([\d.]+) s \((\d+) images/s\), ([\d.]+) CPU s \((\d+) images per CPU "
        r"second\)",
        proc.stderr,
    )
    assert done, proc.stderr
    wall, rate, cpu, per_cpu = map(float, done.groups())
    assert rate == pytest.approx(540 / wall, rel=0.05, abs=1) and per_cpu == pytest.approx(540 / cpu, rel=0.05, abs=1)

    import keras
    import numpy as np

    import trial.model  # noqa: F401  (registers the custom layers; run alone, nothing else here imports it)
    from trial.data import load_test

    model = keras.models.load_model(tmp_path / "model" / "model.keras")
    probs = model.predict(load_test(SAMPLE / "test.csv.gz")[:20].astype("float32"), verbose=0)
    assert probs.shape == (20, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    hparams = json.loads((tmp_path / "model" / "hparams.json").read_text())
    assert hparams["conv_filters"] == 8 and hparams["epochs"] == 2
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(history["val_accuracy"]) == 2


@pytest.mark.process
@pytest.mark.slow
def test_nan_loss_ends_the_trial_with_exit_1():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trial",
            "--max-rows",
            "200",
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--learning-rate",
            "1e12",
            "--conv-filters",
            "8",
            "--dense-units",
            "16",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "loss became NaN or infinite at epoch 1" in proc.stderr and "Traceback" not in proc.stderr
    assert "val_accuracy" not in proc.stdout  # no metric line for a diverged epoch


@pytest.mark.process
@pytest.mark.slow
def test_same_seed_same_metrics():
    cmd = [
        sys.executable,
        "-m",
        "trial",
        "--max-rows",
        "200",
        "--epochs",
        "1",
        "--conv-filters",
        "8",
        "--dense-units",
        "16",
    ]
    runs = [subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs)
    assert runs[0].stdout == runs[1].stdout and "val_accuracy=" in runs[0].stdout


@pytest.mark.parametrize("flag, pushes", [(False, 0), (True, 2)])
def test_push_only_when_asked_even_inside_a_katib_pod(monkeypatch, capsys, flag, pushes):
    """Katib's pod webhook sets KATIB_TRIAL_NAME under every collector; under StdOut a push would
    record each epoch a second time, so the trial pushes only with --push-metrics."""
    import kubeflow.katib

    from trial.train import KatibReporter

    sent = []
    monkeypatch.setattr(kubeflow.katib, "report_metrics", lambda metrics: sent.append(metrics))
    monkeypatch.setenv("KATIB_TRIAL_NAME", "digits-random-abcdefgh")
    reporter = KatibReporter(None, push=flag)
    for epoch in range(2):
        reporter.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.9})
    assert len(sent) == pushes
    assert capsys.readouterr().out.count("accuracy=0.900000") == 2  # stdout, the collector's source, always


# --- hardware: precision and threads --------------------------------------------------------------


@pytest.mark.parametrize(
    "asked, flags, gpu, policy",
    [
        ("auto", {"avx512f", "avx512_bf16"}, False, "mixed_bfloat16"),
        ("auto", {"amx_bf16", "amx_tile"}, False, "mixed_bfloat16"),
        ("auto", {"avx2", "avx512f"}, False, "float32"),
        ("auto", {"avx512_bf16"}, True, "mixed_float16"),
        ("float32", {"avx512_bf16"}, True, "float32"),
        ("bfloat16", set(), False, "mixed_bfloat16"),
        ("float16", set(), False, "mixed_float16"),
    ],
)
def test_precision_follows_the_hardware_or_the_flag(asked, flags, gpu, policy):
    from trial.hardware import choose_precision

    assert choose_precision(asked, flags, gpu)[0] == policy


def test_cpu_flags_and_limit_are_read_from_the_system_files(tmp_path):
    from trial.hardware import cpu_flags, cpu_limit

    assert cpu_flags("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n") == {"fpu", "avx512f", "avx512_bf16"}
    (tmp_path / "cpu.max").write_text("400000 100000\n")  # a pod with limits.cpu: 4
    assert cpu_limit(tmp_path) == min(4, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no limit: the CPUs this process may use
    assert cpu_limit(tmp_path) == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU still gets one thread
    assert cpu_limit(tmp_path) == 1


@pytest.mark.process
def test_an_in_process_run_leaves_kerass_global_policy_as_it_found_it(tmp_path):
    import keras

    from trial.config import TrialConfig
    from trial.data import load_train
    from trial.train import train

    x, y = load_train(SAMPLE / "train.csv.gz", max_rows=64)
    keras.mixed_precision.set_global_policy("float32")
    train(TrialConfig(epochs=1, val_fraction=0, precision="bfloat16", threads=1, model_out=tmp_path / "m"), x, y)
    # the retrain trains several members in one process, and what it loads or builds next is not the trial's
    assert keras.mixed_precision.global_policy().name == "float32"
    saved = keras.saving.load_model(tmp_path / "m" / "model.keras")
    assert saved.layers[1].dtype_policy.name == "mixed_bfloat16"  # the trained model keeps its own


def test_the_first_stderr_line_says_the_precision_and_threads():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trial",
            "--max-rows",
            "100",
            "--epochs",
            "1",
            "--precision",
            "bfloat16",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = next(line for line in proc.stderr.splitlines() if line.startswith("trial:"))
    assert first == "trial: precision mixed_bfloat16 (asked for), 1 thread"
    assert "epoch=1 " in proc.stdout
