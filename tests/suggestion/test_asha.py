"""ASHA's rule on hand-made trial lists: promotion of the top 1/eta per rung, never of a
failed, killed or early-stopped trial, never waiting for a rung to fill, rung resources,
and decisions that depend only on the input (so a restarted service repeats them)."""

from __future__ import annotations

import math

import pytest

from pipeline.errors import UserError
from pipeline.katib.algorithms import asha_plan, asha_problems
from pipeline.katib.experiment import Experiment
from pipeline.suggestion.asha import SUCCEEDED, TrialView, config_key, promotion_mark, suggest
from tests.suggestion.katib_controller import asha_experiment

EXP = Experiment(asha_experiment())
PARAMS = EXP.parameters


def plan(**settings):
    return asha_plan({**EXP.algorithm_settings, **settings}, PARAMS, "digits-asha")


def config(lr: str, epochs: int = 1) -> dict[str, str]:
    """A configuration of the shipped search space, told apart by its learning rate."""
    return {
        "learning-rate": lr,
        "lr-decay": "0.9",
        "batch-size": "64",
        "optimizer": "adam",
        "conv-filters": "32",
        "dense-units": "128",
        "dropout": "0.3",
        "augment": "0.1",
        "arch": "pool",
        "epochs": str(epochs),
    }


def done(name: str, lr: str, value: float, epochs: int = 1, condition: str = SUCCEEDED) -> TrialView:
    return TrialView(name, config(lr, epochs), condition, str(value))


def running(name: str, lr: str, epochs: int = 1) -> TrialView:
    return TrialView(name, config(lr, epochs), "RUNNING")


def ask(trials, request=1, first=None, promoted=frozenset(), maximize=True, **settings):
    first = len(trials) if first is None else first
    return suggest(plan(**settings), PARAMS, maximize, trials, request, first, set(promoted))


def test_rungs_grow_by_eta_and_stop_at_max_resource():
    assert plan().rungs == (1, 3, 9)
    assert plan(eta="2", max_resource="9").rungs == (1, 2, 4, 8, 9)
    assert plan(min_resource="2", max_resource="7").rungs == (2, 6, 7)


def test_max_resource_defaults_to_the_resource_parameters_max():
    settings = {k: v for k, v in EXP.algorithm_settings.items() if k != "max_resource"}
    assert asha_plan(settings, PARAMS, "x").max_resource == 9


def test_the_top_third_of_a_rung_is_promoted_best_first_with_the_same_hyperparameters():
    trials = [done(f"t{i}", f"0.00{i}", v) for i, v in enumerate([0.90, 0.97, 0.93, 0.95, 0.91, 0.92], start=1)]
    decisions, _ = ask(trials, request=3)
    assert [d.promoted_from for d in decisions[:2]] == ["t2", "t4"]  # 6 results: the top 6 // 3 = 2
    assert decisions[0].assignments == config("0.002", 3) and decisions[0].rung == 1
    assert decisions[2].promoted_from is None and decisions[2].rung == 0  # nothing else qualifies: a new one
    assert decisions[2].assignments["epochs"] == "1"


def test_a_rung_is_never_waited_for():
    """Three results of a rung are enough to promote one, whatever still runs; two are not."""
    trials = [done("a", "0.001", 0.9), done("b", "0.002", 0.8), running("c", "0.003"), running("d", "0.004")]
    decisions, _ = ask(trials)
    assert decisions[0].rung == 0 and decisions[0].promoted_from is None
    decisions, _ = ask(trials + [done("e", "0.005", 0.85)])
    assert decisions[0].promoted_from == "a"


@pytest.mark.parametrize("condition", ["FAILED", "KILLED", "EARLYSTOPPED", "RUNNING"])
def test_a_trial_that_did_not_succeed_is_neither_promoted_nor_counted(condition):
    trials = [done("bad", "0.001", 0.99, condition=condition)] + [
        done(f"t{i}", f"0.00{i}", 0.9 + i / 100) for i in range(2, 5)
    ]
    decisions, _ = ask(trials, request=2)
    assert decisions[0].promoted_from == "t4"
    assert decisions[1].promoted_from is None  # three results: one promotion only


def test_minimize_promotes_the_lowest():
    trials = [done(f"t{i}", f"0.00{i}", v) for i, v in enumerate([0.3, 0.1, 0.2], start=1)]
    decisions, _ = ask(trials, maximize=False)
    assert decisions[0].promoted_from == "t2"


def test_a_configuration_already_at_the_next_rung_is_not_promoted_again():
    trials = [done(f"t{i}", f"0.00{i}", 0.9 + i / 100) for i in range(1, 7)] + [running("up", "0.006", 3)]
    decisions, _ = ask(trials)
    assert decisions[0].promoted_from == "t5"


def test_an_issued_promotion_is_remembered_when_its_trial_is_not_listed_yet():
    trials = [done(f"t{i}", f"0.00{i}", 0.9 + i / 100) for i in range(1, 4)]
    (first,), marks = ask(trials)
    assert first.promoted_from == "t3"
    assert marks == {promotion_mark(config_key(first.assignments, "epochs"), 1)}
    (again,), _ = ask(trials, first=len(trials) + 1, promoted=marks)  # the controller's list lags behind
    assert again.promoted_from is None


def test_higher_rungs_are_served_first_and_the_top_rung_is_the_end():
    lower = [done(f"t{i}", f"0.00{i}", 0.80 + i / 100) for i in range(1, 13)]  # top 12 // 3 = 4: t12..t9
    middle = [done(f"m{i}", f"0.00{i}", 1.2 - i / 100, epochs=3) for i in (10, 11, 12)]  # top 1: m10
    decisions, _ = ask(lower + middle, request=3)
    assert [(d.promoted_from, d.rung) for d in decisions] == [("m10", 2), ("t9", 1), (None, 0)]
    assert decisions[0].assignments == config("0.0010", 9)
    top = [done("u10", "0.0010", 0.99, epochs=9)]
    decisions, _ = ask(lower + middle + top, request=1)
    assert decisions[0].promoted_from == "t9"  # rung 2 is the top: nothing goes beyond max_resource


def test_a_trial_at_a_resource_no_rung_has_is_left_out():
    trials = [done(f"t{i}", f"0.00{i}", 0.9 + i / 100, epochs=5) for i in range(1, 7)]
    decisions, _ = ask(trials, request=2)
    assert all(d.promoted_from is None for d in decisions)


def test_new_configurations_are_in_the_space_rendered_as_katib_strings_and_distinct():
    decisions, _ = ask([], request=20)
    keys = {config_key(d.assignments, "epochs") for d in decisions}
    assert len(keys) == 20
    for d in decisions:
        a = d.assignments
        assert list(a) == [p.name for p in PARAMS] and a["epochs"] == "1"
        assert 0.0003 <= float(a["learning-rate"]) <= 0.01
        assert a["conv-filters"] == str(int(a["conv-filters"])) and 16 <= int(a["conv-filters"]) <= 64
        assert a["batch-size"] in ("32", "64", "128") and a["arch"] in ("strided", "pool")
        assert a["dropout"] == str(float(a["dropout"]))  # Python's str(), as Katib's Python services render
    logs = [math.log(float(d.assignments["learning-rate"])) for d in decisions]
    assert min(logs) < math.log(0.001) < max(logs)  # logUniform honoured: small rates are drawn too


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_decisions_depend_only_on_the_input(sampler):
    trials = [done(f"t{i}", f"0.00{i}", 0.9 + (i * 7 % 5) / 100) for i in range(1, 9)] + [running("r", "0.0091")]
    one = ask(trials, request=4, first=12, base_sampler=sampler)
    two = ask(list(trials), request=4, first=12, base_sampler=sampler)
    assert one == two
    other = ask(trials, request=4, first=12, base_sampler=sampler, random_state="8")
    assert [d.assignments for d in one[0] if d.rung == 0] != [d.assignments for d in other[0] if d.rung == 0]
    # A slot's new configuration is the same whether it is asked alone or in a batch.
    alone = ask(trials, request=1, first=14, base_sampler=sampler, promoted=one[1])
    assert alone[0][0] == one[0][2] == one[0][2] and one[0][2].rung == 0


def test_tpe_learns_from_the_lowest_rung():
    """With a clear winner region in the history, tpe's proposals move towards it; random's do not."""
    trials = [
        done(f"t{i}", repr(lr), 0.99 - abs(math.log(lr / 0.0005)) / 10)
        for i, lr in enumerate(
            [0.0004, 0.0005, 0.0006, 0.002, 0.004, 0.006, 0.008, 0.01, 0.003, 0.0045, 0.0055, 0.007], start=1
        )
    ]
    trials = [TrialView(t.name, t.assignments, t.condition, t.value) for t in trials]
    promoted = {promotion_mark(config_key(t.assignments, "epochs"), 1) for t in trials}  # only new ones wanted
    tpe, _ = ask(trials, request=8, promoted=promoted, base_sampler="tpe")
    rnd, _ = ask(trials, request=8, promoted=promoted, base_sampler="random")
    median = lambda ds: sorted(float(d.assignments["learning-rate"]) for d in ds)[len(ds) // 2]  # noqa: E731
    assert median(tpe) < median(rnd)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"eta": "1"}, "eta"),
        ({"eta": "x"}, "eta"),
        ({"min_resource": "0"}, "min_resource"),
        ({"max_resource": "1"}, "max_resource"),
        ({"max_resource": "12"}, "max_resource"),
        ({"resource_name": "epoch"}, "resource_name"),
        ({"resource_name": "dropout"}, "resource_name"),
        ({"random_state": "-1"}, "random_state"),
        ({"base_sampler": "cmaes"}, "base_sampler"),
        ({"nonsense": "1"}, "nonsense"),
    ],
)
def test_each_bad_setting_is_named(settings, name):
    problems = asha_problems({**EXP.algorithm_settings, **settings}, PARAMS)
    assert problems and problems[0][0] == name and name in problems[0][1]
    with pytest.raises(UserError, match=name):
        plan(**settings)
