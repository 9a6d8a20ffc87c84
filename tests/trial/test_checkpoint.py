"""--checkpoint-dir: the key, atomic snapshots, and a promoted run continuing where the shorter one stopped."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, SAMPLE
from trial.checkpoint import Snapshot, Store, checkpoint_key, key_material
from trial.cli import build_parser
from trial.config import NOT_IN_CHECKPOINT_KEY, REPLACED_IN_CHECKPOINT_KEY, TrialConfig

X = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1)
Y = np.array([3, 7])
TINY = ["--max-rows", "300", "--batch-size", "32", "--conv-filters", "8", "--dense-units", "32", "--threads", "1"]


def key(config: TrialConfig = TrialConfig(), policy: str = "float32", x=X, y=Y) -> str:
    return checkpoint_key(key_material(config, policy, x, y))


# --- the key ------------------------------------------------------------------------------------------


def test_the_key_ignores_epochs_and_where_things_go():
    same: dict[str, Any] = dict(
        epochs=3,
        model_out=Path("m"),
        metrics_file=Path("f"),
        push_metrics=True,
        threads=2,
        cache_dir=Path("c"),
        checkpoint_dir=Path("d"),
        data=Path("elsewhere/train.csv"),
        precision="auto",
    )
    assert {key(TrialConfig(**{name: value})) for name, value in same.items()} == {key()}


@pytest.mark.parametrize(
    "change",
    [
        {"learning_rate": 0.01},
        {"seed": 1},
        {"split_seed": 42},
        {"dropout": 0.2},
        {"val_fraction": 0.2},
        {"lr_decay": 1.0},
        {"batch_size": 32},
        {"optimizer": "sgd"},
        {"arch": "pool"},
        {"augment": 0.0},
    ],
)
def test_other_hyperparameters_make_another_key(change):
    assert key(TrialConfig(**change)) != key()


def test_the_rows_and_the_resolved_precision_are_in_the_key():
    assert key(x=X[:1], y=Y[:1]) != key()  # --max-rows or another file: other rows
    assert key(y=np.array([3, 8])) != key()
    assert key(policy="mixed_bfloat16") != key()  # --precision auto resolves by the hardware


def test_every_field_is_in_the_key_unless_the_rule_lists_it():
    names = {f.name for f in dataclasses.fields(TrialConfig)}
    assert set(NOT_IN_CHECKPOINT_KEY + REPLACED_IN_CHECKPOINT_KEY) <= names  # no typo in the rule
    material = key_material(TrialConfig(), "float32", X, Y)
    assert names - set(NOT_IN_CHECKPOINT_KEY) - set(REPLACED_IN_CHECKPOINT_KEY) <= set(material)
    assert not set(NOT_IN_CHECKPOINT_KEY) & set(material)


def test_checkpoint_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--checkpoint-dir", str(tmp_path / "f")])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(f"--checkpoint-dir: {tmp_path / 'f'} is a file, not a directory")
    )


def test_a_missing_dir_is_created_and_an_unwritable_one_is_one_line(tmp_path):
    store = Store(tmp_path / "a" / "b", key_material(TrialConfig(), "float32", X, Y))
    assert (tmp_path / "a" / "b").is_dir() and store.latest() == (None, f"no checkpoint at {store.path}")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match=r"^--checkpoint-dir .*/f/sub: cannot create it \(.*\)$"):
        Store(tmp_path / "f" / "sub", {})


# --- snapshots ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """A tiny compiled model after one step (optimizer state and generator states past their start)."""
    from trial.model import build_model

    model = build_model(TrialConfig(conv_filters=4, dense_units=8))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X.astype("float32"), Y, epochs=1, verbose=0)
    return model


def newest(store: Store) -> Snapshot:
    """The store's newest snapshot, which the test expects to be there."""
    snapshot, why = store.latest()
    assert snapshot is not None, why
    return snapshot


def store_in(path: Path) -> Store:
    return Store(path, key_material(TrialConfig(), "float32", X, Y))


def history(epochs: int) -> dict:
    return {"loss": [1.0 / (k + 1) for k in range(epochs)], "accuracy": [0.5] * epochs}


def test_a_snapshot_round_trips_weights_optimizer_and_generators(tmp_path, trained):
    store = store_in(tmp_path)
    written = store.save(trained, 2, history(2))
    assert written == store.path / "epoch-0002" and sorted(p.name for p in written.iterdir()) == [
        "model.keras",
        "state.json",
    ]
    snapshot = newest(store)
    assert snapshot.epochs == 2 and snapshot.history == history(2)
    model = store.load_model(snapshot)
    for a, b in zip(trained.weights, model.weights, strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    assert [v.numpy().tolist() for v in trained.optimizer.variables] == [
        v.numpy().tolist() for v in model.optimizer.variables
    ]  # Adam's step count and moments
    seeds = {
        layer.name: layer.seed_generator.state.numpy().tolist()
        for layer in model.layers
        if getattr(layer, "seed_generator", None) is not None
    }
    assert seeds == snapshot.seeds and all(state[1] > 0 for state in seeds.values())  # where training left them


def test_a_later_epoch_replaces_the_earlier_one(tmp_path, trained):
    store = store_in(tmp_path)
    store.save(trained, 1, history(1))
    store.save(trained, 2, history(2))
    assert [p.name for p in store.path.iterdir()] == ["epoch-0002"]
    assert newest(store).epochs == 2


def test_a_write_cut_short_leaves_no_snapshot(tmp_path, trained, monkeypatch):
    store = store_in(tmp_path)
    store.save(trained, 1, history(1))

    def dies_half_way(model, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(trained), "save", dies_half_way)
    with pytest.raises(OSError):
        store.save(trained, 2, history(2))
    assert [p.name for p in store.path.iterdir()] == ["epoch-0001"]  # no epoch-0002, no temporary folder
    assert newest(store).epochs == 1


def test_a_killed_writers_temporary_folder_is_ignored_then_swept(tmp_path, trained):
    store = store_in(tmp_path)
    store.path.mkdir()
    killed = store.path / ".tmp-epoch-0003-999-deadbeef"
    killed.mkdir()
    (killed / "model.keras").write_bytes(b"PK\x03\x04 half")  # kill -9 between the two files
    assert store.latest() == (None, f"no checkpoint at {store.path}")
    store.save(trained, 1, history(1))
    assert killed.exists()  # it could be a live duplicate's
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    store.save(trained, 2, history(2))
    assert not killed.exists()


def test_duplicates_racing_for_one_epoch_keep_the_first(tmp_path, trained):
    first, second = store_in(tmp_path), store_in(tmp_path)  # two trials with the same key
    first.save(trained, 1, history(1))
    before = (first.path / "epoch-0001" / "state.json").stat().st_mtime_ns
    second.save(trained, 1, {"loss": [9.0], "accuracy": [0.0]})  # loses the rename, says nothing
    assert (first.path / "epoch-0001" / "state.json").stat().st_mtime_ns == before
    assert newest(first).history == history(1)
    assert [p.name for p in first.path.iterdir()] == ["epoch-0001"]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: (d / "state.json").write_text("{not json"), "state.json unreadable: JSONDecodeError"),
        (lambda d: (d / "state.json").unlink(), "state.json unreadable: FileNotFoundError"),
        (lambda d: (d / "model.keras").unlink(), "model.keras is missing"),
        (
            lambda d: (d / "state.json").write_text(
                json.dumps({**json.loads((d / "state.json").read_text()), "epochs": 3})
            ),
            "state.json says 3 epochs in folder",
        ),
        (
            lambda d: (d / "state.json").write_text(
                json.dumps({**json.loads((d / "state.json").read_text()), "history": {}})
            ),
            "state.json has no loss history",
        ),
        (
            lambda d: (d / "state.json").write_text(
                json.dumps(
                    {
                        **json.loads((d / "state.json").read_text()),
                        "key": {**key_material(TrialConfig(), "float32", X, Y), "learning_rate": 0.01},
                    }
                )
            ),
            "written for other settings: learning_rate 0.01 here 0.001",
        ),
    ],
)
def test_a_damaged_or_foreign_snapshot_is_not_used_and_says_why(tmp_path, trained, damage, reason):
    store = store_in(tmp_path)
    damage(store.save(trained, 2, history(2)))
    snapshot, why = store.latest()
    assert snapshot is None and why.startswith(f"checkpoint at {store.path / 'epoch-0002'} not used (")
    assert reason in why and "\n" not in why
    store.save(trained, 1, history(1))  # the run from scratch sweeps the broken one away
    assert [p.name for p in store.path.iterdir()] == ["epoch-0001"]


def test_a_model_file_that_does_not_load_is_one_line(tmp_path, trained):
    store = store_in(tmp_path)
    written = store.save(trained, 2, history(2))
    (written / "model.keras").write_bytes((written / "model.keras").read_bytes()[:500])  # truncated
    snapshot = newest(store)
    with pytest.raises(ValueError) as err:
        store.load_model(snapshot)
    assert str(err.value).startswith(f"checkpoint at {written} not used (model.keras does not load: ")
    assert "\n" not in str(err.value)


def test_a_snapshot_without_a_generators_state_is_not_resumed(tmp_path, trained):
    store = store_in(tmp_path)
    written = store.save(trained, 1, history(1))
    state = json.loads((written / "state.json").read_text())
    name = sorted(state["seeds"])[0]
    del state["seeds"][name]
    (written / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=rf"not used \(state.json has no random generator state for layer '{name}'\)$"):
        store.load_model(newest(store))


# --- the trial ----------------------------------------------------------------------------------------


def run_trial(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "trial", "--data", str(SAMPLE / "train.csv.gz"), *TINY, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def said(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("trial:")]


@pytest.mark.process
@pytest.mark.slow
def test_a_longer_run_continues_from_the_shorter_ones_checkpoint(tmp_path):
    """ASHA's promotion: 1 epoch, then the same configuration for 2 continues at epoch 2, and its line is
    the line a plain 2-epoch run prints (each epoch's shuffle, dropout and augmentation draws and the
    optimizer's state all continue; on this CPU the 6-decimal lines are identical)."""
    ckpt = tmp_path / "ckpt" / "nested"  # created
    plain = run_trial("--epochs", "2").stdout.splitlines()
    first = run_trial("--epochs", "1", "--checkpoint-dir", ckpt)
    assert first.stdout.splitlines() == plain[:1]
    [key_dir] = list(ckpt.iterdir())
    assert f"trial: no checkpoint at {key_dir}: training from scratch" in said(first)

    second = run_trial(
        "--epochs",
        "2",
        "--checkpoint-dir",
        ckpt,
        "--model-out",
        tmp_path / "model",
        "--metrics-file",
        tmp_path / "metrics.log",
    )
    assert f"trial: resumed from {key_dir} at epoch 1" in said(second)
    assert "trial: trained 1 epoch in" in second.stderr
    assert second.stdout.splitlines() == plain[1:]  # epoch=2 only, and what the plain run printed
    assert (tmp_path / "metrics.log").read_text().splitlines() == plain[1:]
    saved = json.loads((tmp_path / "model" / "history.json").read_text())
    assert len(saved["loss"]) == 2 and f"loss={saved['loss'][0]:.6f}" in plain[0]  # the whole run's history
    assert [p.name for p in key_dir.iterdir()] == ["epoch-0002"]

    # Asked again for 2 (or fewer) epochs: nothing to train, and Katib still reads every epoch's line.
    again = run_trial("--epochs", "2", "--checkpoint-dir", ckpt)
    assert f"trial: checkpoint at {key_dir} has 2 epochs: epochs 1..2 reported from its history, no training" in said(
        again
    )
    assert again.stdout.splitlines() == plain and "trained" not in again.stderr


@pytest.mark.slow
def test_corrupt_checkpoint_means_from_scratch_with_the_reason(tmp_path, capsys):
    from trial.cli import main

    ckpt = tmp_path / "ckpt"
    assert main([*TINY, "--epochs", "1", "--checkpoint-dir", str(ckpt)]) == 0
    plain = capsys.readouterr().out
    [snapshot] = [p for key_dir in ckpt.iterdir() for p in key_dir.iterdir()]
    (snapshot / "model.keras").write_bytes(b"garbage")
    assert main([*TINY, "--epochs", "2", "--checkpoint-dir", str(ckpt)]) == 0
    out, err = capsys.readouterr()
    [why] = [line for line in err.splitlines() if "training from scratch" in line]
    assert why.startswith(f"trial: checkpoint at {snapshot} not used (model.keras does not load: ")
    assert why.endswith("): training from scratch")
    assert out.splitlines()[0] == plain.strip() and len(out.splitlines()) == 2  # retrained both epochs
    assert [p.name for p in snapshot.parent.iterdir()] == ["epoch-0002"]


@pytest.mark.slow
def test_a_diverged_run_leaves_no_checkpoint(tmp_path, capsys):
    from trial.cli import main

    ckpt = tmp_path / "ckpt"
    assert (
        main([*TINY, "--epochs", "2", "--optimizer", "sgd", "--learning-rate", "1e12", "--checkpoint-dir", str(ckpt)])
        == 1
    )
    assert "loss became NaN" in capsys.readouterr().err
    assert [list(key_dir.iterdir()) for key_dir in ckpt.iterdir()] in ([], [[]])


@pytest.mark.slow
def test_a_longer_checkpoint_is_not_cut_down_for_model_out(tmp_path, capsys):
    from trial.cli import main

    ckpt = tmp_path / "ckpt"
    assert main([*TINY, "--epochs", "2", "--checkpoint-dir", str(ckpt)]) == 0
    two = capsys.readouterr().out.splitlines()
    assert main([*TINY, "--epochs", "1", "--checkpoint-dir", str(ckpt)]) == 0  # lines from the history
    assert capsys.readouterr().out.splitlines() == two[:1]
    assert main([*TINY, "--epochs", "1", "--checkpoint-dir", str(ckpt), "--model-out", str(tmp_path / "m")]) == 0
    out, err = capsys.readouterr()
    assert "has 2 epochs and --model-out wants the model after 1): training from scratch" in err
    assert out.splitlines() == two[:1] and (tmp_path / "m" / "model.keras").is_file()
    assert sorted(p.name for key_dir in ckpt.iterdir() for p in key_dir.iterdir()) == ["epoch-0001", "epoch-0002"]
