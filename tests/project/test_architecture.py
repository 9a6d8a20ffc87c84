"""The house's one rule: imports run one way, down the layers of `pipeline.LAYERS` (pipeline/__init__.py,
where the rule is stated); `trial` (the trial program) imports nothing of pipeline.

Read from the source with `ast` (lazy imports inside functions count too), so a
cycle or a backward import fails here before it confuses a reader. Run alone:
`python -m pytest tests/project/test_architecture.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pipeline
from tests.conftest import REPO

# {"pipeline.katib": 1, ...}: each package's layer, from the one table.
LAYERS = {f"pipeline.{package}": rank for rank, packages in enumerate(pipeline.LAYERS) for package in packages}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for root in ("pipeline", "trial") for p in sorted((REPO / root).rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports (`from pipeline import lint` names pipeline.lint)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


GRAPH = {name: imports(path, set(modules())) - {name} for name, path in modules().items()}


def layer(name: str) -> tuple[str, int] | None:
    for package, rank in LAYERS.items():
        if name == package or name.startswith(package + "."):
            return package, rank
    return None


def ranked(name: str) -> tuple[str, int]:
    """layer(name) for a module that must have one."""
    found = layer(name)
    assert found is not None, f"{name} belongs to no layer"
    return found


def test_the_table_names_each_package_once_and_only_packages_there_are():
    named = [package for packages in pipeline.LAYERS for package in packages]
    assert len(named) == len(set(named)), f"a package in two layers: {named}"
    missing = [
        p for p in named if not (REPO / "pipeline" / p).is_dir() and not (REPO / "pipeline" / f"{p}.py").is_file()
    ]
    assert not missing, f"pipeline.LAYERS names what pipeline/ does not have: {missing}"


def test_every_module_belongs_to_a_layer():
    stray = [m for m in GRAPH if m.startswith("pipeline.") and layer(m) is None]
    assert not stray, f"modules outside the layered packages: {stray}"


@pytest.mark.parametrize("name", sorted(m for m in GRAPH if layer(m)))
def test_imports_point_down(name):
    package, rank = ranked(name)
    wrong = []
    for target in sorted(GRAPH[name]):
        if target.startswith("trial"):
            continue  # the trial program is below everything
        if target == "pipeline":
            continue
        target_package, target_rank = ranked(target)
        if target_package != package and target_rank >= rank:
            wrong.append(f"{target} ({target_package}, layer {target_rank} >= {rank})")
    assert not wrong, f"{name} imports upward or sideways: {wrong}"


def test_trial_does_not_import_pipeline():
    bad = {
        m: sorted(t for t in targets if t.startswith("pipeline"))
        for m, targets in GRAPH.items()
        if m.startswith("trial")
    }
    assert not any(bad.values()), bad


def test_no_import_cycles():
    """Tarjan's strongly connected components over every module; any with two or more is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_backward_import(tmp_path):
    """The rule can fail: a katib module importing the local run is caught."""
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from pipeline.local.controller import run_experiment\n")
    found = imports(fake, set(modules()))
    assert found == {"pipeline.local.controller"}
    assert ranked("pipeline.local.controller")[1] > ranked("pipeline.katib.render")[1]
