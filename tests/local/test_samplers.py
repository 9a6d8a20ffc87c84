"""Every Katib algorithm maps to a local sampler; every parameter to an Optuna distribution."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from hypothesis import given, settings, strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline import lint
from pipeline.errors import UserError
from pipeline.katib.algorithms import grid_points
from pipeline.katib.experiment import Experiment, Param
from pipeline.local import samplers
from pipeline.local.hyperband import NotReady, SeenTrial
from pipeline.local.samplers import distribution_for, to_optuna
from tests.fake_trial import experiment


def build(exp):
    """As the dry-run builds it: after the linter (pipeline.lint.load)."""
    return samplers.build_algorithm(lint.load(exp))


PARAMS: list[dict[str, Any]] = [
    {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.0001", "max": "0.1", "distribution": "logUniform"},
    },
    {"name": "drop", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.5", "step": "0.1"}},
    {"name": "units", "parameterType": "int", "feasibleSpace": {"min": "16", "max": "64", "step": "16"}},
    {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
    {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": ["32", "64"]}},
]
SAMPLER_TYPES = {
    "random": samplers.HyperoptSampler,
    "tpe": samplers.HyperoptSampler,
    "multivariate-tpe": optuna.samplers.TPESampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "sobol": optuna.samplers.QMCSampler,
    "bayesianoptimization": samplers.SkoptSampler,
}


def run_asks(alg, n=6, maximize=True):
    """Ask n trials and tell each a made-up objective, as the dry-run does."""
    study = optuna.create_study(sampler=alg.sampler, direction="maximize" if maximize else "minimize")
    seen = []
    for i in range(n):
        t = study.ask(alg.distributions)
        raw = getattr(alg.sampler, "raw", {}).pop(t.number, None) or dict(t.params)
        t.set_user_attr("assignments", {k: str(v) for k, v in raw.items()})
        study.tell(t, float(i % 3))
        seen.append(raw)
    return seen


@pytest.mark.parametrize("name", list(SAMPLER_TYPES))
def test_each_algorithm_samples_inside_the_space(name):
    params = [dict(p, feasibleSpace=dict(p["feasibleSpace"])) for p in PARAMS]
    if name == "grid":
        params[0]["feasibleSpace"]["step"] = "0.02"
    exp = experiment(
        algorithm=name, parameters=params, max_trials=6, settings={"random_state": 7} if name not in ("sobol",) else {}
    )
    if name == "bayesianoptimization":
        exp["spec"]["algorithm"]["algorithmSettings"] += [
            {"name": "n_initial_points", "value": "4"},
            {"name": "acq_optimizer", "value": "sampling"},
        ]
    alg = build(exp)
    assert isinstance(alg.sampler, SAMPLER_TYPES[name])
    for v in run_asks(alg):
        assert 0.0001 <= v["lr"] <= 0.1
        assert v["opt"] in ("adam", "sgd") and v["bs"] in ("32", "64")
        assert v["units"] in (16, 32, 48, 64) or name in ("bayesianoptimization",)
        assert 0.1 - 1e-9 <= v["drop"] <= 0.5 + 1e-9


def test_grid_points_follow_np_arange():
    assert grid_points([Param("d", "double", 0.1, 0.5, 0.1)]) == {"d": [0.1, 0.2, 0.30000000000000004, 0.4, 0.5]}
    exp = experiment(algorithm="grid", parameters=PARAMS[1:], max_trials=4)
    assert build(exp).grid_size == 5 * 4 * 2 * 2


def test_grid_needs_step_for_doubles():
    exp = experiment(algorithm="grid")
    with pytest.raises(UserError, match="step"):
        build(exp)


@pytest.mark.parametrize("name", ["enas", "darts", "pbt", "nonsense"])
def test_unsupported_algorithms_are_refused(name):
    with pytest.raises(UserError, match="supported: random, tpe, multivariate-tpe, grid, cmaes, sobol"):
        samplers.build_algorithm(Experiment(experiment(algorithm=name)))  # unlinted: the local refusal itself


@pytest.mark.parametrize(
    "name,settings,message",
    [
        ("random", {"gamma": "0.5"}, "unknown setting 'gamma' for algorithm random"),
        ("tpe", {"gamma": "1.5"}, "gamma"),
        ("cmaes", {"restart_strategy": "xx"}, "restart_strategy"),
        ("bayesianoptimization", {"base_estimator": "SVM"}, "base_estimator"),
        ("hyperband", {"eta": "3"}, "r_l and resource_name"),
    ],
)
def test_bad_settings(name, settings, message):
    with pytest.raises(UserError, match=message):
        build(experiment(algorithm=name, settings=settings))


def test_cmaes_needs_two_numeric_parameters():
    params = [PARAMS[0], PARAMS[3]]
    with pytest.raises(UserError, match="two or more dimensional"):
        build(experiment(algorithm="cmaes", parameters=params))


def test_tpe_settings_reach_hyperopt():
    alg = build(experiment(algorithm="tpe", settings={"gamma": 0.3, "n_EI_candidates": 5}))
    assert alg.sampler.tpe_settings == {"gamma": 0.3, "n_EI_candidates": 5}
    assert len(run_asks(alg, 8)) == 8


def test_normal_distribution_only_for_hyperopt():
    p = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1", "distribution": "normal"}},
        PARAMS[2],
    ]
    assert build(experiment(algorithm="tpe", parameters=p))
    with pytest.raises(UserError, match="normal"):
        build(experiment(algorithm="multivariate-tpe", parameters=p))


def test_hyperband_service_sizes_rungs_from_the_request():
    """Katib v0.19's service: the master rung has as many trials as requested, and a promotion
    answers ceil(R / eta) to a request for R (so only R = 1 is accepted after the first rung)."""
    params = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
    ]
    exp = experiment(
        algorithm="hyperband",
        parameters=params,
        parallel=9,
        max_trials=30,
        settings={"r_l": 9, "eta": 3, "resource_name": "epochs", "random_state": 1},
    )
    hb = build(exp).hyperband
    state, rung1 = hb.suggest(9, [])
    assert len(rung1) == 9 and {v["epochs"] for v in rung1} == {"1"}
    hb.state = state
    seen = [SeenTrial(float(i), True, v["x"], v) for i, v in enumerate(rung1)]
    with pytest.raises(NotReady):  # one trial of the rung still running: the service raises, Katib retries
        hb.suggest(1, seen[:-1] + [SeenTrial(8.0, False, "unavailable", rung1[-1])])
    _, promoted = hb.suggest(9, seen)
    assert len(promoted) == 3  # != 9: Katib refuses the answer and retries forever (kubeflow/katib#1168)
    _, promoted = hb.suggest(1, seen)
    assert [v["epochs"] for v in promoted] == ["3"]
    assert promoted[0]["x"] == max((v["x"] for v in rung1), key=float)


def test_hyperband_samples_like_katibs_parsing_util():
    """Hyperband samples as Katib's parsing util does: uniform even for logUniform, ints rounded,
    discrete = nearest entry to a uniform draw."""
    params = [
        {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.0003", "max": "0.01", "distribution": "logUniform"},
        },
        {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": ["32", "64", "128"]}},
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
    ]
    exp = experiment(
        algorithm="hyperband",
        parameters=params,
        parallel=9,
        max_trials=30,
        settings={"r_l": 9, "eta": 3, "resource_name": "epochs", "random_state": 1},
    )
    hb = build(exp).hyperband
    draws = [hb.sample() for _ in range(4000)]
    below = sum(float(d["lr"]) < 0.001 for d in draws) / len(draws)
    assert abs(below - (0.001 - 0.0003) / (0.01 - 0.0003)) < 0.02  # uniform: 0.072, not log-uniform's 0.35
    share = {b: sum(d["bs"] == b for d in draws) / len(draws) for b in ("32", "64", "128")}
    assert abs(share["32"] - 1 / 6) < 0.03 and abs(share["64"] - 1 / 2) < 0.03 and abs(share["128"] - 1 / 3) < 0.03


def test_hyperband_parallel_check():
    params = [
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
    ]
    exp = experiment(
        algorithm="hyperband", parameters=params, parallel=2, settings={"r_l": 9, "eta": 3, "resource_name": "epochs"}
    )
    with pytest.raises(UserError, match="needs parallelTrialCount >= 9"):
        build(exp)


@st.composite
def feasible(draw):
    kind = draw(st.sampled_from(["double", "int", "categorical"]))
    if kind == "categorical":
        items = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=5, unique=True))
        return Param("p", "categorical", choices=tuple(items))
    log = draw(st.booleans())
    lo = draw(st.floats(min_value=1e-6 if log else -1e6, max_value=1e6))
    hi = draw(st.floats(min_value=lo, max_value=max(lo, 1e6) * 2 + 1))
    if kind == "int":
        lo, hi = math.ceil(lo), math.floor(hi)
        if hi < lo or (log and lo < 1):
            lo, hi = max(1, lo), max(1, lo) + 5
    step = draw(st.sampled_from([None, 1, 2])) if kind == "int" and not log else None
    return Param("p", kind, float(lo), float(hi), step, "logUniform" if log else "uniform")


@settings(max_examples=150, deadline=None)
@given(feasible(), st.floats(min_value=0, max_value=1))
def test_mapping_round_trips_inside_bounds(param, u):
    dist = distribution_for(param, "random")
    if isinstance(dist, CategoricalDistribution):
        assert dist.choices == param.choices
        return
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    value = param.min + u * (param.max - param.min)  # any value a library may return inside the space
    recorded = to_optuna(value, dist)
    assert dist._contains(dist.to_internal_repr(recorded))
    assert dist.low <= recorded <= dist.high
    assert param.min <= dist.low and dist.high <= param.max or (dist.log and param.type == "int")


def test_tpe_startup_is_katibs_request_number(monkeypatch):
    """Katib's hyperopt service passes current_request_number as n_startup_jobs."""
    import hyperopt

    alg = build(experiment(algorithm="tpe", parallel=4, max_trials=8))
    seen: list[int] = []
    real = hyperopt.tpe.suggest

    def recorded(*a, **kw):
        seen.append(kw["n_startup_jobs"])
        return real(*a, **kw)

    monkeypatch.setattr(hyperopt.tpe, "suggest", recorded)
    alg.sampler.start_batch(4)
    run_asks(alg, 1)
    alg.sampler.start_batch(1)  # one trial finished: Katib asks for one more
    run_asks(alg, 1)
    assert seen == [4, 1]


def test_skopt_asks_once_per_batch():
    """Katib's skopt service asks ask(n_points=k) for a batch of k: different points even
    when no result came in between."""
    alg = build(
        experiment(
            algorithm="bayesianoptimization",
            parameters=PARAMS[:1] + PARAMS[2:4],
            parallel=2,
            settings={"n_initial_points": 1, "random_state": 3},
        )
    )
    study = optuna.create_study(sampler=alg.sampler, direction="maximize")
    t = study.ask(alg.distributions)
    t.set_user_attr("assignments", {k: str(v) for k, v in alg.sampler.raw.pop(t.number).items()})
    study.tell(t, 0.5)  # one result: past the initial random point, the GP is in charge
    alg.sampler.start_batch(2)
    batch = []
    for _ in range(2):
        t = study.ask(alg.distributions)
        batch.append(alg.sampler.raw.pop(t.number))
    assert batch[0] != batch[1]
