"""The bench's sections, one module each, and the registry `python -m bench` runs them from.

Each section module has `ABOUT` (what it measures, for --help), `measure(...)` (the figures, as plain
arguments), and the CLI's part: `add_arguments(group)` (its own flags; flops has none), `run(args, report)`
(the flags and the report so far in, its figures out) and, for accuracy and compare, `check(args)`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from bench.sections import accuracy, asha, compare, efficiency, flops, overhead, precision, profile, serve, throughput


@dataclass(frozen=True)
class Section:
    """One named section: what it measures and how the CLI runs it."""

    name: str
    about: str
    run: Callable[[argparse.Namespace, dict], dict]
    add_arguments: Callable[[argparse._ArgumentGroup], None] | None = None  # its own flags, if any
    check: Callable[[argparse.Namespace], None] | None = None  # raises SystemExit before any section runs
    needs_data: bool = True  # reads --data's train.csv.gz (serve reads data/sample only)
    by_default: bool = True  # runs without --only (compare reads other runs' models: only when named)


def _section(name: str, module, **kwargs) -> Section:
    return Section(name, module.ABOUT, module.run, getattr(module, "add_arguments", None), **kwargs)


# In the order they run (flops reads the throughput section's figures when both run).
SECTIONS: dict[str, Section] = {
    s.name: s
    for s in [
        _section("throughput", throughput),
        _section("flops", flops),
        _section("precision", precision),
        _section("profile", profile),
        _section("overhead", overhead),
        _section("efficiency", efficiency),
        _section("asha", asha),
        _section("accuracy", accuracy, check=accuracy.check),
        _section("compare", compare, check=compare.check, by_default=False),
        _section("serve", serve, needs_data=False),
    ]
}
