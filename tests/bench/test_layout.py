"""The bench's imports run one way: bench uses pipeline and trial, nothing of theirs imports bench; inside
bench, a section imports no other section, nor the registry, the report or the CLI, and nothing imports
the CLI but the package and `python -m bench`. Read with `ast`, lazy imports included, as
tests/project/test_architecture.py reads the rest of the house."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def imported(path: Path) -> set[str]:
    """Every module `path` imports, top-level and inside functions (`from a import b` gives a and a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


BENCH = {name(p): imported(p) for p in sorted((REPO / "bench").rglob("*.py"))}


def test_nothing_of_pipeline_or_trial_imports_bench():
    for root in ("pipeline", "trial"):
        for path in sorted((REPO / root).rglob("*.py")):
            assert not {m for m in imported(path) if m == "bench" or m.startswith("bench.")}, path


def test_bench_uses_only_pipeline_trial_and_itself_of_this_project():
    project = ("tests", "oracle", "scripts", "deploy", "experiments")
    for module, modules in BENCH.items():
        assert not {m for m in modules if m.split(".")[0] in project}, module


def test_a_section_imports_no_other_section_nor_the_registry_report_or_cli():
    from bench.sections import SECTIONS

    sections = {m for m in BENCH if m.startswith("bench.sections.")}
    assert {m.rsplit(".", 1)[1] for m in sections} == set(SECTIONS)  # one module per registered section
    for module in sections:
        inside = {m for m in BENCH[module] if m.startswith("bench.")}
        assert not inside & (sections | {"bench.sections", "bench.report", "bench.cli"}), module


def test_only_the_package_and_its_main_import_the_cli():
    assert {m for m, modules in BENCH.items() if "bench.cli" in modules} == {"bench", "bench.__main__"}
