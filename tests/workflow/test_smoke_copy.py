"""steps.smoke_copy: the small-budget copy the Katib box's tier and scripts/e2e-kind.sh apply."""

from __future__ import annotations

import pytest

from pipeline import lint
from pipeline.katib.render import trial_argv
from pipeline.workflow.steps import smoke_copy
from tests.conftest import REPO


def argv(exp, **values):
    samples = {p.name: p.choices[0] if p.choices else int(p.min) if p.type == "int" else p.min for p in exp.parameters}
    return trial_argv(exp, {**samples, **values})


def test_a_small_copy_of_tpe_has_its_budget_and_stays_admissible():
    exp = lint.load(REPO / "experiments" / "tpe.yaml")
    small = smoke_copy(exp, "ns1", max_trials=2, rows=300, epochs=1, requests={"cpu": "100m", "memory": "512Mi"})
    assert (small.max_trial_count, small.parallel_trial_count, small.namespace) == (2, 2, "ns1")
    assert argv(small)[-2:] == ["--max-rows=300", "--epochs=1"]
    assert small.primary_container()["resources"]["requests"] == {"cpu": "100m", "memory": "512Mi"}
    assert small.primary_container()["resources"]["limits"] == exp.primary_container()["resources"]["limits"]
    lint.load(small.raw)
    assert exp.max_trial_count == 24 and "--max-rows=300" not in argv(exp)  # the original is untouched


@pytest.mark.parametrize("name", ["hyperband", "asha"])
def test_the_resource_parameter_keeps_its_epochs(name):
    exp = lint.load(REPO / "experiments" / f"{name}.yaml")
    small = smoke_copy(exp, "ns1", max_trials=10, rows=300, epochs=1)
    words = argv(small, epochs=9)
    assert [w for w in words if w.startswith("--epochs")] == ["--epochs=9"]
    assert words[-1] == "--max-rows=300"
    if name == "hyperband":  # its one bracket needs eta ** s_max = 9 in parallel: the budget rule keeps them
        assert small.parallel_trial_count == 9
