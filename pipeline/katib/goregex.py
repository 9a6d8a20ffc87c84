"""Metric filters the way Katib's Go code compiles and applies them (RE2 syntax).

Katib compiles `metricsFormat` with Go's `regexp` (RE2 syntax, leftmost-first
matching, ASCII-only `\\w \\d \\s`). Python's `re` accepts things RE2 does not
(lookarounds, backreferences, possessive quantifiers) and rejects things it
accepts (`\\z`, `\\pL`, `\\Q..\\E`), so this module compiles filters with Google's
RE2 (the `google-re2` package), plus the few places where Go's parser differs
from C++ RE2 (`\\C` is an RE2-only escape).

The filters also travel from the Experiment to the metrics-collector sidecar
as ONE flag: the pod webhook joins them with ";" and the sidecar splits them
on ";" again, so a filter containing ";" reaches the sidecar in pieces
(`sidecar_filters`). A piece Go cannot compile becomes a nil regexp there, and
the sidecar crashes on its first metric line.
"""

from __future__ import annotations

import re as _pyre
from dataclasses import dataclass
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every rejected pattern on stderr

# Go's regexp/syntax rejects these escapes that C++ RE2 accepts.
_GO_ONLY_REJECTS = _pyre.compile(r"(?<!\\)(?:\\\\)*\\C")

# The validating webhook's check that a filter has "two top subexpressions" (a Go regexp itself).
_TWO_GROUPS = re2.compile(r".*\(.*\).*\(.*\).*", _OPTIONS)


class GoRegexError(ValueError):
    """Go's regexp.Compile would fail on this pattern."""


@dataclass(frozen=True)
class Filter:
    pattern: str
    compiled: Any  # an re2 pattern (google-re2 ships no types)

    def finditer(self, line: str):
        """Go's FindAllStringSubmatch: like finditer, but an empty match right after the
        previous match is dropped."""
        last_end = -1
        for m in self.compiled.finditer(line):
            if m.start() == m.end() == last_end:
                continue
            last_end = m.end()
            yield m


def compile_go(pattern: str) -> Filter:
    """The pattern as Go's regexp.Compile builds it; GoRegexError where Go fails."""
    if not isinstance(pattern, str):
        raise GoRegexError(f"{pattern!r} is not a string")
    if _GO_ONLY_REJECTS.search(pattern):
        raise GoRegexError("invalid escape sequence: `\\C`")
    try:
        return Filter(pattern, re2.compile(pattern, _OPTIONS))
    except UnicodeEncodeError:
        raise GoRegexError("not valid UTF-8") from None
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise GoRegexError(str(msg)) from None


def go_compiles(pattern: str) -> bool:
    try:
        compile_go(pattern)
    except GoRegexError:
        return False
    return True


def has_two_groups(pattern: str) -> bool:
    """The webhook's `.*\\(.*\\).*\\(.*\\).*` test (it looks for two '(' ... ')' pairs in the text)."""
    return _TWO_GROUPS.search(pattern) is not None


def sidecar_filters(filters: list[str] | tuple[str, ...] | None) -> list[str]:
    """The filters the sidecar ends up with: joined with ';' by the pod webhook (only when
    there is at least one) and split on ';' by the sidecar (only when the flag is non-empty)."""
    filters = list(filters or [])
    if not filters:
        return []
    joined = ";".join(filters)
    return joined.split(";") if joined else []
