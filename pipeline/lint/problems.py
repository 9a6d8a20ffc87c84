"""What a lint rule reports, and a small collector the rule modules share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"  # Katib (webhook or the suggestion service) rejects it, or the Experiment fails at start
WARNING = "warning"  # Katib silently accepts it, but it is a mistake: we are stricter than Katib
NOTE = "note"  # Katib accepts it and it works, but not the way the YAML reads
STRICTER = "stricter than Katib"
# An error Katib's webhook does not raise (the Experiment is admitted), but that makes
# Katib create no trial, or fail every trial: still an error, said so in the message.
ADMITTED_BUT_FAILS = "Katib's webhook admits this, but"


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "spec.parameters[2].feasibleSpace.min"; "" for the whole document
    message: str
    severity: str = ERROR

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Findings(list):
    """A list of Problems with one-word adders, so rules read like the rules."""

    def error(self, path: str, message: str) -> None:
        self.append(Problem(path, message, ERROR))

    def warning(self, path: str, message: str) -> None:
        self.append(Problem(path, f"{message} ({STRICTER})", WARNING))

    def fails_later(self, path: str, message: str) -> None:
        """An error Katib finds only after admission (no trial is created, or every one fails)."""
        self.append(Problem(path, f"{ADMITTED_BUT_FAILS} {message}", ERROR))

    def note(self, path: str, message: str) -> None:
        self.append(Problem(path, message, NOTE))


def as_int(value: Any) -> int | None:
    """`value` if it is a YAML integer (not a bool); the schema check reports the rest."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def settings_of(block: Any) -> list[tuple[int, str, Any]]:
    """(index, name, value) of an algorithm's / early stopping's `algorithmSettings`."""
    out = []
    for i, s in enumerate(as_list(as_dict(block).get("algorithmSettings"))):
        if isinstance(s, dict):
            out.append((i, str(s.get("name", "")), s.get("value")))
    return out
