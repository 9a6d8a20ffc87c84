"""The trial container's volume mounts on this machine: `--mount PATH=DIR` folders,
a folder of the run's own for a writable mount left unmapped, and container paths
in the trial's arguments and env rewritten to the local folders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment


def _as_is(text: str) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement that inserts `text` as it is (a folder's backslashes are no escapes)."""
    return lambda _match: text


@dataclass(frozen=True)
class Mounts:
    folders: dict[str, str]  # container path -> local folder
    unmapped: list[str] = field(default_factory=list)  # declared mounts with no folder
    created: list[str] = field(default_factory=list)  # "PATH -> FOLDER": writable mounts given one

    @classmethod
    def resolve(cls, exp: Experiment, given: dict[str, str], out: Path) -> Mounts:
        """--mount folders by container path, and the read-only mounts left unmapped (the trial's input,
        which only the user can provide). A writable mount left unmapped (asha's checkpoints) gets a
        folder of the run's own, OUT/volumes/NAME, kept across a resumed run like a PVC."""
        declared = exp.primary_container().get("volumeMounts") or []
        folders: dict[str, str] = {}
        created: list[str] = []
        for path, local in given.items():
            if not path.startswith("/"):
                raise UserError(f"--mount {path}={local}: the container path must be absolute")
            if not Path(local).is_dir():
                raise UserError(f"--mount {path}={local}: {local} is not a directory")
            folders[path.rstrip("/") or "/"] = str(Path(local).resolve())
        for m in declared:
            path = (m.get("mountPath") or "").rstrip("/")
            if path and path not in folders and not m.get("readOnly") and m.get("name"):
                folder = out / "volumes" / str(m["name"])
                folder.mkdir(parents=True, exist_ok=True)
                folders[path] = str(folder.resolve())
                created.append(f"{path} -> {folder}")
        unmapped = sorted(
            m.get("mountPath") for m in declared if m.get("mountPath") and m["mountPath"].rstrip("/") not in folders
        )
        return cls(folders, unmapped, created)

    def map_paths(self, text: str, extra: dict[str, str] | None = None) -> str:
        """`text` with every container path under a mount (longest first) replaced by its local folder."""
        for path, local in sorted({**self.folders, **(extra or {})}.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(r"(?<![\w.-])" + re.escape(path) + r"(?=/|$|[^\w.-])", _as_is(local), text)
        return text
