"""pipeline.katib.budget: the one rule for budget overrides (tune, pipeline, lint --run)."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.katib.budget import with_budget
from pipeline.katib.experiment import load_unchecked
from tests.conftest import REPO


def shipped(name):
    return load_unchecked(REPO / "experiments" / f"{name}.yaml")


def test_smaller_budget_shrinks_unasked_parallelism_and_failures():
    exp = shipped("random")
    assert (exp.max_trial_count, exp.parallel_trial_count) == (24, 3)
    b = with_budget(exp, max_trial_count=2)
    assert (b.experiment.max_trial_count, b.experiment.parallel_trial_count) == (2, 2)
    failed = b.experiment.max_failed_trial_count
    assert failed is not None and failed <= 2 and b.katib_admissible and not b.notes


def test_explicit_parallelism_is_kept():
    b = with_budget(shipped("random"), max_trial_count=3, parallel_trial_count=1)
    assert (b.experiment.max_trial_count, b.experiment.parallel_trial_count) == (3, 1)


def test_hyperband_keeps_the_parallelism_its_service_needs():
    exp = shipped("hyperband")
    assert exp.parallel_trial_count == 9
    # the pipeline's local budget: 3 trials, 1 at a time
    b = with_budget(exp, max_trial_count=3, parallel_trial_count=1)
    assert (b.experiment.max_trial_count, b.experiment.parallel_trial_count) == (3, 9)
    assert not b.katib_admissible
    assert any("raised to 9" in n for n in b.notes) and any("Katib would reject" in n for n in b.notes)
    # tune --max-trial-count 3: the same result
    assert with_budget(exp, max_trial_count=3).experiment.parallel_trial_count == 9


def test_grid_budget_above_the_grid_is_refused():
    with pytest.raises(UserError, match="Max Trial Count: 1000 > all possible search combinations"):
        with_budget(shipped("grid"), max_trial_count=1000)


def test_file_is_untouched_and_bad_counts_refused():
    exp = shipped("random")
    with_budget(exp, max_trial_count=1)
    assert exp.max_trial_count == 24
    with pytest.raises(UserError, match="maxTrialCount override must be >= 1"):
        with_budget(exp, max_trial_count=0)


@pytest.mark.parametrize(
    "max_trials, parallel, expected",
    [
        (None, None, (24, 3, 3)),  # None keeps the YAML's
        (2, None, (2, 2, 2)),  # a smaller budget shrinks parallel and maxFailed (Katib rejects them above it)
        (5, 1, (5, 1, 3)),
    ],
)
def test_counts(max_trials, parallel, expected):
    exp = with_budget(shipped("random"), max_trials, parallel).experiment
    assert (exp.max_trial_count, exp.parallel_trial_count, exp.max_failed_trial_count) == expected
