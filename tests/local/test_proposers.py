"""The proposers: one interface over Optuna samplers, Katib's hyperband service and our own
suggestion service, driven here as the controller drives them (no trial processes)."""

from __future__ import annotations

import time

import pytest

from pipeline import lint
from pipeline.katib import collector as mc
from pipeline.katib.trial_rules import TrialEnd, judge
from pipeline.local import samplers
from pipeline.local.proposers import (
    BatchProposer,
    HyperbandProposer,
    Proposer,
    SamplerProposer,
    ServiceProposer,
    proposer_for,
)
from pipeline.local.study import Store
from tests.fake_trial import experiment

HB_PARAMS = [
    {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
    {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}},
]
HB_SETTINGS = {"r_l": 2, "eta": 2, "resource_name": "epochs", "random_state": 3}
EPOCHS = {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}}


@pytest.fixture
def open_store(tmp_path):
    stores = []

    def make(exp: dict):
        loaded = lint.load(exp)
        alg = samplers.build_algorithm(loaded)
        store = Store(
            f"sqlite:///{tmp_path / 'study.db'}", loaded.name, alg.sampler, loaded.objective.maximize, tmp_path
        )
        stores.append(store)
        store.claim(loaded.spec, "test")
        return loaded, alg, store

    yield make
    for s in stores:
        s.release()


def start(store, proposal, name):
    """What the controller records when it launches a proposal."""
    for key, value in {
        "name": name,
        "assignments": proposal.assignments,
        "katib_state": "Running",
        "start": time.time(),
        **{k: v for k, v in proposal.attrs.items() if v is not None},
    }.items():
        proposal.trial.set_user_attr(key, value)


def succeed(store, proposal, accuracy):
    cspec = mc.CollectorSpec("accuracy", ["accuracy"], {"accuracy": "max"})
    end = TrialEnd(returncode=0)
    store.record_end(proposal.trial, judge(cspec, f"accuracy={accuracy}\n", end), end)


@pytest.mark.parametrize(
    "algorithm,settings,params,family",
    [
        ("random", {"random_state": 1}, None, SamplerProposer),
        ("hyperband", HB_SETTINGS, HB_PARAMS, HyperbandProposer),
        ("asha", {"resource_name": "epochs", "eta": 3, "random_state": 3}, HB_PARAMS[:1] + [EPOCHS], ServiceProposer),
    ],
)
def test_one_interface_one_proposer_per_family(open_store, algorithm, settings, params, family):
    _, alg, store = open_store(
        experiment(algorithm=algorithm, settings=settings, parameters=params, max_trials=6, parallel=2, max_failed=None)
    )
    proposer = proposer_for(alg, store)
    assert isinstance(proposer, family) and isinstance(proposer, Proposer)
    assert isinstance(proposer, BatchProposer) == (family is not SamplerProposer)
    assert list(proposer.propose(0)) == []
    got = list(proposer.propose(2))
    assert len(got) == 2 and not proposer.exhausted
    for p in got:
        assert set(p.assignments) == {q.name for q in alg.params}
        assert all(isinstance(v, str) for v in p.assignments.values())
        assert p.attrs["raw"] == p.assignments


def test_grid_is_exhausted_after_its_points(open_store):
    params = [
        {"name": "x", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "b"]}},
        {"name": "y", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}},
    ]
    _, alg, store = open_store(experiment(algorithm="grid", parameters=params, max_trials=None, parallel=3))
    proposer = proposer_for(alg, store)
    seen = []
    for i, p in enumerate(proposer.propose(10)):  # each launched before the next is made
        start(store, p, f"t{i}")
        seen.append((p.assignments["x"], p.assignments["y"]))
    assert sorted(seen) == [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]
    assert proposer.exhausted and list(proposer.propose(1)) == []


def test_hyperband_refusal_is_what_stalls(open_store):
    """After the first rung the controller asks for 2, the service answers 1: Katib refuses the answer
    and retries forever; the proposer proposes nothing and says why."""
    _, alg, store = open_store(
        experiment(
            algorithm="hyperband",
            parameters=HB_PARAMS,
            settings=HB_SETTINGS,
            max_trials=None,
            parallel=2,
            max_failed=None,
        )
    )
    proposer = proposer_for(alg, store)
    rung = list(proposer.propose(2))
    assert [p.assignments["epochs"] for p in rung] == ["1", "1"] and rung[0].attrs["rung"] == "s=1,i=0"
    for i, (p, acc) in enumerate(zip(rung, ("0.4", "0.6"), strict=True)):
        start(store, p, f"t{i}")
        succeed(store, p, acc)
    assert list(proposer.propose(2)) == []
    why = proposer.stall()
    assert why is not None
    assert "would stay Running here forever" in why and "asked the hyperband service for 2 trial(s)" in why
    assert "kubeflow/katib#1168" in why
    promoted = list(proposer.propose(1))  # the only request Katib v0.19's service can satisfy
    assert [p.assignments["epochs"] for p in promoted] == ["2"]
    assert promoted[0].assignments["x"] == rung[1].assignments["x"]


def test_hyperband_state_survives_a_resume(open_store):
    exp = experiment(
        algorithm="hyperband", parameters=HB_PARAMS, settings=HB_SETTINGS, max_trials=None, parallel=2, max_failed=None
    )
    _, alg, store = open_store(exp)
    list(proposer_for(alg, store).propose(2))
    again = samplers.build_algorithm(lint.load(exp))
    resumed = proposer_for(again, store)
    resumed.resume()
    fresh = samplers.build_algorithm(lint.load(exp)).hyperband
    assert again.hyperband is not None and alg.hyperband is not None and fresh is not None
    assert again.hyperband.state == alg.hyperband.state != fresh.state
