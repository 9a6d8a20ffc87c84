"""Per-epoch checkpoints, so a trial promoted to more epochs continues instead of starting over.

`--checkpoint-dir DIR` keeps the latest epoch of a run in DIR/<key>/epoch-NNNN/: model.keras (weights,
batch-norm step counts and the optimizer's state) and state.json (what the key was made of, the epochs
done, the per-epoch metric history and the dropout/augmentation random-generator states, which
model.keras does not keep). The key is a hash of everything that shapes training except --epochs
(`trial.config.NOT_IN_CHECKPOINT_KEY` is the rule), so a run of E epochs and one of E' share it.

Each snapshot is written to a temporary folder beside it and renamed into place, so a killed trial leaves
either a whole snapshot or none. Trials with different keys never meet; two with the same key (a duplicate
suggestion) race harmlessly: the first rename of an epoch wins and the other's copy is dropped.
docs/trial-checkpoints.md has the cluster side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trial.config import NOT_IN_CHECKPOINT_KEY, REPLACED_IN_CHECKPOINT_KEY, TrialConfig

# Bump when a change to the model or the training loop makes old checkpoints a different run.
FORMAT = 1
SNAPSHOT = re.compile(r"epoch-(\d{4,})")
STALE_TEMP_S = 3600  # a temporary folder this old belongs to a killed writer (a snapshot takes seconds)


def key_material(config: TrialConfig, policy: str, x: np.ndarray, y: np.ndarray) -> dict:
    """What the key hashes: the training-shaping fields, the rows trained on, the resolved precision policy."""
    settings = {
        name: value
        for name, value in config.to_json().items()
        if name not in NOT_IN_CHECKPOINT_KEY + REPLACED_IN_CHECKPOINT_KEY
    }
    rows = hashlib.sha256()
    for array in (x, y):
        rows.update(f"{array.dtype}{array.shape}".encode())
        rows.update(np.ascontiguousarray(array).data)
    return {"format": FORMAT, **settings, "rows": rows.hexdigest()[:32], "policy": policy}


def checkpoint_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Snapshot:
    path: Path
    epochs: int
    history: dict[str, list[float]]  # Keras' History layout: one list per metric, epochs 1..`epochs`
    seeds: dict[str, list[int]]  # layer name -> its SeedGenerator state


class Store:
    """DIR/<key>/ for one run: `latest()` to resume from, `save()` after each epoch."""

    def __init__(self, root: Path, material: dict):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"--checkpoint-dir {root}: cannot create it ({exc.strerror or exc})") from None
        if not root.is_dir():
            raise ValueError(f"--checkpoint-dir {root} is a file, not a directory")
        self.material = material
        self.path = root / checkpoint_key(material)
        self.unusable: Path | None = None  # a snapshot found broken: pruned by the next save

    def latest(self) -> tuple[Snapshot | None, str]:
        """The newest snapshot, or None and why not (one line, for stderr)."""
        for _ in range(3):  # a duplicate's save may prune the newest while it is read: look again
            numbered = sorted((int(m.group(1)), p) for p in self._entries() if (m := SNAPSHOT.fullmatch(p.name)))
            if not numbered:
                return None, f"no checkpoint at {self.path}"
            epochs, path = numbered[-1]
            try:
                state = json.loads((path / "state.json").read_text())
                problem = self._mismatch(state, epochs)
                if problem is None and not (path / "model.keras").is_file():
                    problem = "model.keras is missing"
            except (OSError, ValueError) as exc:  # ValueError: not JSON
                problem = f"state.json unreadable: {type(exc).__name__}: {exc}"
            if problem is None:
                return Snapshot(path, epochs, state["history"], state["seeds"]), f"checkpoint at {path}"
            if path.exists():
                break
        self.unusable = path
        assert problem is not None  # every turn that did not return found one
        return None, f"checkpoint at {path} not used ({_one_line(problem)})"

    def _mismatch(self, state, epochs: int) -> str | None:
        if not isinstance(state, dict) or not {"key", "epochs", "history", "seeds"} <= set(state):
            return "state.json lacks key, epochs, history or seeds"
        if state["key"] != self.material:
            theirs = state["key"] if isinstance(state["key"], dict) else {}
            diff = [f"{k} {theirs.get(k)!r} here {v!r}" for k, v in self.material.items() if theirs.get(k) != v]
            return "written for other settings: " + ", ".join(diff or ["unknown"])
        if (
            not isinstance(state["history"], dict)
            or "loss" not in state["history"]
            or not isinstance(state["seeds"], dict)
        ):
            return "state.json has no loss history or no generator states"
        if state["epochs"] != epochs or any(len(v) != epochs for v in state["history"].values()):
            return f"state.json says {state['epochs']} epochs in folder epoch-{epochs:04d}"
        return None

    def load_model(self, snapshot: Snapshot):
        """The snapshot's compiled model, its optimizer and random generators where training left them.
        Raises ValueError (one line) when the file does not load."""
        import keras

        try:
            model = keras.models.load_model(snapshot.path / "model.keras")
            for layer in model.layers:
                if getattr(layer, "seed_generator", None) is not None:
                    state = layer.seed_generator.state
                    state.assign(np.asarray(snapshot.seeds[layer.name], state.dtype))
        except KeyError as exc:
            self.unusable = snapshot.path
            raise ValueError(
                f"checkpoint at {snapshot.path} not used (state.json has no random generator state for layer {exc})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a damaged file
            self.unusable = snapshot.path
            raise ValueError(
                f"checkpoint at {snapshot.path} not used (model.keras does not load: "
                f"{_one_line(f'{type(exc).__name__}: {exc}')})"
            ) from None
        if getattr(model, "optimizer", None) is None or int(model.optimizer.iterations.numpy()) == 0:
            self.unusable = snapshot.path
            raise ValueError(f"checkpoint at {snapshot.path} not used (model.keras has no optimizer state)")
        return model

    def save(self, model, epochs: int, history: dict[str, list[float]]) -> Path:
        """Write epoch-NNNN atomically; then drop older snapshots (and a broken one found at start)."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"epoch-{epochs:04d}"
        temp = self.path / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            model.save(temp / "model.keras")
            seeds = {
                layer.name: [int(v) for v in np.asarray(layer.seed_generator.state.numpy())]
                for layer in model.layers
                if getattr(layer, "seed_generator", None) is not None
            }
            state = {
                "key": self.material,
                "epochs": epochs,
                "seeds": seeds,
                "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            }
            (temp / "state.json").write_text(json.dumps(state, indent=1))
            for name in ("model.keras", "state.json"):  # on disk before the rename, should the node go down
                with open(temp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                temp.rename(target)
            except OSError:  # a duplicate trial renamed this epoch first: its copy is the same run
                if not (target / "state.json").is_file():
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        for path in self._entries():
            m = SNAPSHOT.fullmatch(path.name)
            stale_temp = path.name.startswith(".tmp-") and _age(path) > STALE_TEMP_S
            if (m and int(m.group(1)) < epochs) or path == self.unusable or stale_temp:
                shutil.rmtree(path, ignore_errors=True)
        return target

    def _entries(self) -> list[Path]:
        try:
            return list(self.path.iterdir())
        except OSError:
            return []


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]
