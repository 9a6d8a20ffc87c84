"""Katib `algorithmName` + `algorithmSettings` -> a local search algorithm.

One Optuna study holds every run (storage, resume, visualization). Where Katib
runs hyperopt (random, tpe) or scikit-optimize (bayesianoptimization), the
same library runs here inside an Optuna sampler, with Katib's setting names,
so the local search behaves like the cluster's. multivariate-tpe and grid use
Optuna exactly as Katib's Optuna service does. cmaes and sobol run on goptuna
(Go) in Katib; here Optuna's CmaEsSampler / QMCSampler stand in (same
algorithms, different implementations). hyperband follows Katib's own
bracket schedule. Values a library returns are kept as Katib would render
them (`raw` values); the Optuna record is only clipped into its bounds.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from pipeline.errors import UserError
from pipeline.katib import algorithms as rules
from pipeline.katib.experiment import Experiment, Param
from pipeline.local.hyperband import Hyperband

REFUSED = {
    "enas": "neural architecture search",
    "darts": "neural architecture search",
    "pbt": "population based training (needs trial checkpoints and restarts)",
}


def distribution_for(p: Param, algorithm: str) -> BaseDistribution:
    """The Optuna distribution that records `p` (as Katib's Optuna service builds it)."""
    if p.type in ("discrete", "categorical"):
        return CategoricalDistribution(p.choices)
    # Only hyperopt samples normal/logNormal (the linter rejects them for Optuna's service; the
    # others ignore `distribution`), so elsewhere they are recorded as uniform.
    hyperopt = rules.ALGORITHMS[algorithm].backend == "hyperopt"
    log = p.distribution == "logUniform" or (hyperopt and p.distribution == "logNormal")
    if hyperopt and p.distribution in ("normal", "logNormal"):
        # hyperopt's normal is unbounded: record it in a +-5 sigma window.
        lo, hi = (math.log(p.low), math.log(p.high)) if log else (p.low, p.high)
        mu, sigma = (lo + hi) / 2, (hi - lo) / 6
        lo, hi = mu - 5 * sigma, mu + 5 * sigma
        if log:
            return FloatDistribution(math.exp(lo), math.exp(hi), log=True)
        return FloatDistribution(lo, hi) if p.type == "double" else IntDistribution(math.floor(lo), math.ceil(hi))
    if p.type == "int":
        lo, hi = int(p.low), int(p.high)
        if log:
            return IntDistribution(max(1, lo), hi, log=True)
        step = int(p.step) if p.step else 1
        return IntDistribution(lo, lo + (hi - lo) // step * step, step=step)
    if log:
        if p.high <= 0:
            raise UserError(f"parameter {p.name}: logUniform needs max > 0")
        return FloatDistribution(max(1e-10, p.low), p.high, log=True)
    if p.step:
        import warnings

        with warnings.catch_warnings():  # float drift in (high - low) / step: Optuna adjusts high itself
            warnings.simplefilter("ignore")
            return FloatDistribution(p.low, p.low + math.floor((p.high - p.low) / p.step + 1e-9) * p.step, step=p.step)
    return FloatDistribution(p.low, p.high)


def to_optuna(value: Any, dist: BaseDistribution) -> Any:
    """A Katib value as a value `dist` accepts (clipped / snapped for the record only)."""
    if isinstance(dist, CategoricalDistribution):
        return str(value) if str(value) in dist.choices else dist.choices[0]
    assert isinstance(dist, (FloatDistribution, IntDistribution))  # Katib's spaces have no other kind
    v = float(value)
    v = min(max(v, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        return int(dist.low + round((round(v) - dist.low) / dist.step) * dist.step)
    if dist.step:
        k = round((v - dist.low) / dist.step)
        return min(dist.low + k * dist.step, dist.high)
    return v


# ---------------------------------------------------------------- library-backed samplers
class _KatibSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler that proposes all parameters at once from Katib's
    history (assignments as Katib strings + numeric objective values)."""

    def __init__(self, params: list[Param], maximize: bool, seed: int | None):
        self.params = params
        self.maximize = maximize
        self.seed = seed
        self.raw: dict[int, dict[str, Any]] = {}
        self._rng: np.random.RandomState | None = None
        self._independent = optuna.samplers.RandomSampler(seed=seed)
        self.request = 1  # Katib's current_request_number for the batch being proposed

    def start_batch(self, request: int) -> None:
        """The controller is about to ask for `request` trials at once, as Katib's GetSuggestions does."""
        self.request = max(1, request)

    def _ensure_rng(self, study: optuna.Study) -> np.random.RandomState:
        if self._rng is None:
            # A resumed run continues a different stream than the first one.
            base = self.seed if self.seed is not None else secrets.randbits(31)
            self._rng = np.random.RandomState((base + len(study.get_trials(deepcopy=False))) % (2**32))
        return self._rng

    @staticmethod
    def history(study: optuna.Study) -> list[tuple[dict[str, str], float]]:
        out = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            a = t.user_attrs.get("assignments")
            if a is not None and t.value is not None and math.isfinite(t.value):
                out.append((a, t.value))
        return out

    def infer_relative_search_space(self, study, trial):
        return {p.name: distribution_for(p, "random") for p in self.params}

    def sample_relative(self, study, trial, search_space):
        if not search_space:
            return {}
        raw = self.propose(study)
        self.raw[trial.number] = raw
        return {name: to_optuna(raw[name], search_space[name]) for name in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def propose(self, study: optuna.Study) -> dict[str, Any]:
        raise NotImplementedError


class HyperoptSampler(_KatibSampler):
    """hyperopt's rand / tpe, fed Katib's history the way Katib's hyperopt service does."""

    def __init__(self, params, maximize, algorithm: str, seed=None, parallel: int = 1, **tpe_settings):
        super().__init__(params, maximize, seed)
        import hyperopt  # noqa: F401 - fail at build time, not at the first proposal

        self.algorithm = algorithm
        self.parallel = parallel
        self.tpe_settings = tpe_settings
        self._domain: Any = None  # a hyperopt.Domain, built at the first proposal (hyperopt ships no types)

    def _space(self):
        from hyperopt import hp

        space = {}
        for p in self.params:
            if p.type in ("discrete", "categorical"):
                space[p.name] = hp.choice(p.name, list(p.choices))
            elif p.distribution == "logUniform":
                lo, hi = math.log(p.low), math.log(p.high)
                space[p.name] = hp.qloguniform(p.name, lo, hi, p.step) if p.step else hp.loguniform(p.name, lo, hi)
            elif p.distribution == "normal":
                mu, sigma = (p.low + p.high) / 2, (p.high - p.low) / 6
                space[p.name] = hp.qnormal(p.name, mu, sigma, p.step) if p.step else hp.normal(p.name, mu, sigma)
            elif p.distribution == "logNormal":
                lo, hi = math.log(p.low), math.log(p.high)
                mu, sigma = (lo + hi) / 2, (hi - lo) / 6
                space[p.name] = hp.qlognormal(p.name, mu, sigma, p.step) if p.step else hp.lognormal(p.name, mu, sigma)
            elif p.step:
                space[p.name] = hp.quniform(p.name, p.low, p.high, p.step)
            elif p.type == "int":
                space[p.name] = hp.uniformint(p.name, p.low, p.high)
            else:
                space[p.name] = hp.uniform(p.name, p.low, p.high)
        return space

    def propose(self, study):
        import hyperopt

        if self._domain is None:
            self._domain = hyperopt.Domain(None, self._space(), pass_expr_memo_ctrl=None)
        trials = hyperopt.Trials()
        hist = self.history(study)
        if hist:
            tids = trials.new_trial_ids(len(hist))
            specs: list[None] = []
            results: list[dict[str, Any]] = []
            miscs: list[dict[str, Any]] = []
            for tid, (assign, value) in zip(tids, hist, strict=True):
                vals: dict[str, list[Any]] = {}
                for p in self.params:
                    v = assign[p.name]
                    if p.type in ("discrete", "categorical"):
                        vals[p.name] = [list(p.choices).index(v)] if v in p.choices else [0]
                    elif p.type == "int":
                        vals[p.name] = [int(float(v))]
                    else:
                        vals[p.name] = [float(v)]
                miscs.append(
                    {
                        "tid": tid,
                        "cmd": self._domain.cmd,
                        "workdir": self._domain.workdir,
                        "idxs": {p.name: [tid] for p in self.params},
                        "vals": vals,
                    }
                )
                specs.append(None)
                results.append({"loss": -value if self.maximize else value, "status": hyperopt.STATUS_OK})
            docs = trials.new_trial_docs(tids, specs, results, miscs)
            for d in docs:
                d["state"] = hyperopt.JOB_STATE_DONE
            trials.insert_trial_docs(docs)
            trials.refresh()
        new_id = trials.new_trial_ids(1)
        seed = int(self._ensure_rng(study).randint(2**31 - 1))
        if self.algorithm == "tpe":
            # Katib's hyperopt service passes current_request_number as n_startup_jobs (not the
            # parallelism): after the first batch, TPE starts as soon as one trial has finished.
            doc = hyperopt.tpe.suggest(
                new_id, self._domain, trials, seed, n_startup_jobs=self.request, **self.tpe_settings
            )[0]
        else:
            doc = hyperopt.rand.suggest(new_id, self._domain, trials, seed)[0]
        out: dict[str, Any] = {}
        for p in self.params:
            v = doc["misc"]["vals"][p.name][0]
            if p.type in ("discrete", "categorical"):
                out[p.name] = p.choices[int(v)]
            elif p.type == "int":
                out[p.name] = int(round(float(v)))
            else:
                out[p.name] = float(v)
        return out


class SkoptSampler(_KatibSampler):
    """scikit-optimize's Optimizer, kept alive across asks like Katib's skopt service."""

    def __init__(
        self,
        params,
        maximize,
        seed=None,
        base_estimator="GP",
        n_initial_points=10,
        acq_func="gp_hedge",
        acq_optimizer="auto",
    ):
        super().__init__(params, maximize, seed)
        import skopt

        dims = []
        for p in params:
            if p.type == "int":
                dims.append(skopt.space.Integer(int(p.low), int(p.high), name=p.name))
            elif p.type == "double":
                # Katib's skopt service uses log-uniform for every double, whatever `distribution` says.
                dims.append(skopt.space.Real(p.low, p.high, "log-uniform", name=p.name))
            else:
                dims.append(skopt.space.Categorical(list(p.choices), name=p.name))
        self._optimizer = skopt.Optimizer(
            dims,
            base_estimator=base_estimator,
            n_initial_points=n_initial_points,
            acq_func=acq_func,
            acq_optimizer=acq_optimizer,
            random_state=seed,
        )
        self._told: int = 0

    def start_batch(self, request: int) -> None:
        """Katib's skopt service answers a request with ONE ask(n_points=request): the points of a
        batch differ even when no new result came in between."""
        super().start_batch(request)
        self._batch: list[list[Any]] = []
        self._batch_size = self.request

    def propose(self, study):
        self._tell(study)
        if not getattr(self, "_batch", None):
            n = getattr(self, "_batch_size", 1)
            self._batch = list(self._optimizer.ask(n_points=n)) if n > 1 else [self._optimizer.ask()]
            self._batch_size = 1
        x = self._batch.pop(0)
        out = {}
        for p, v in zip(self.params, x, strict=True):
            out[p.name] = int(v) if p.type == "int" else float(v) if p.type == "double" else str(v)
        return out

    def _tell(self, study):
        hist = self.history(study)
        new = hist[self._told :]
        if new:
            xs, ys = [], []
            for assign, value in new:
                x = []
                for p in self.params:
                    v = assign[p.name]
                    x.append(int(float(v)) if p.type == "int" else float(v) if p.type == "double" else v)
                xs.append(x)
                ys.append(-value if self.maximize else value)
            self._optimizer.tell(xs, ys)
            self._told = len(hist)


class _GridSampler(optuna.samplers.GridSampler):
    """The grid in the order Katib's grid service walks it: Katib v0.19 pins Optuna 3.3.0
    (cmd/suggestion/optuna/v1beta1/requirements.txt), whose GridSampler keeps the grid in product
    order and draws each new point with `RandomState(seed).choice` among the points neither
    finished nor running; Optuna 4+ shuffles the grid once and hands out its first points in
    trial order, so the same `random_state` would give another sequence (and another
    early-stopping history). Without study.stop() (only valid inside study.optimize): the runner
    counts grid points itself and ends with ExperimentSuggestionEndReached."""

    def __init__(self, search_space: dict[str, list[Any]], seed: int | None = None):
        super().__init__(search_space, seed=seed)
        self._all_grids = list(itertools.product(*self._search_space.values()))  # unshuffled, as 3.3.0
        self._katib_rng = np.random.RandomState(seed)

    def before_trial(self, study, trial):
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        target_grids = self._get_unvisited_grid_ids(study) or list(range(len(self._all_grids)))
        grid_id = int(self._katib_rng.choice(target_grids))
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

    def after_trial(self, study, trial, state, values):
        pass


# ---------------------------------------------------------------- the algorithm object
@dataclass
class Algorithm:
    """A Katib algorithm, built for the local run (pipeline.local.proposers asks it for trials)."""

    name: str
    params: list[Param]
    distributions: dict[str, BaseDistribution]
    sampler: optuna.samplers.BaseSampler
    style: str
    grid_size: int | None = None
    hyperband: Hyperband | None = None
    service: Any = None  # pipeline.local.suggestion.ServiceDriver: one of our own suggestion services
    notes: list[str] = field(default_factory=list)

    @property
    def ends_by_itself(self) -> bool:
        """Whether its own schedule ends the search without maxTrialCount (grid's points, hyperband's brackets)."""
        return self.grid_size is not None or self.hyperband is not None


NOTES = {
    "random": "random: hyperopt rand.suggest, as Katib's hyperopt service",
    "tpe": "tpe: hyperopt tpe.suggest with Katib's settings (gamma, prior_weight, n_EI_candidates)",
    "multivariate-tpe": "multivariate-tpe: Optuna TPESampler(multivariate=True, constant_liar=True), as Katib",
    "grid": "grid: Optuna GridSampler over Katib's grid (np.arange for doubles), as Katib",
    "cmaes": "cmaes: Optuna CmaEsSampler; Katib runs goptuna's CMA-ES (same algorithm, different code and random "
    "stream; categorical parameters are sampled at random here)",
    "sobol": "sobol: Optuna QMCSampler(sobol, unscrambled); Katib runs goptuna's Sobol sequence (the points differ)",
    "bayesianoptimization": "bayesianoptimization: scikit-optimize Optimizer, as Katib (every double log-uniform, "
    "as Katib's skopt service does)",
    "hyperband": "hyperband: Katib v0.19's service and controller reproduced, bugs included (rungs sized from the "
    "controller's request, uniform sampling; where Katib would retry forever the run stops and says "
    "so: kubeflow/katib#1168, #1366)",
    "asha": "asha: this project's suggestion service (pipeline.suggestion.AshaService, the class the cluster "
    "runs), driven in-process with the GetSuggestionsRequest Katib's controller builds",
}


def build_algorithm(exp: Experiment) -> Algorithm:
    """The local counterpart of the Experiment's search algorithm. The Experiment has passed the
    linter (pipeline.lint.load), so settings are valid; what is refused here is what the local
    run cannot do, not what Katib rejects."""
    name = exp.algorithm_name
    if name in REFUSED:
        raise UserError(
            f"spec.algorithm.algorithmName: {name!r} ({REFUSED[name]}) is not supported by the local "
            f"dry-run; supported: {', '.join(rules.ALGORITHMS)}"
        )
    if name not in rules.ALGORITHMS:
        raise UserError(
            f"spec.algorithm.algorithmName: {name!r} is not a supported algorithm; "
            f"supported: {', '.join(rules.ALGORITHMS)}"
        )
    settings = rules.typed_settings(name, exp.algorithm_settings)
    params = exp.parameters
    maximize = exp.objective.maximize
    seed = settings.get("random_state")
    parallel = exp.parallel_trial_count
    dists = {p.name: distribution_for(p, name) for p in params}
    alg = Algorithm(
        name, params, dists, optuna.samplers.RandomSampler(seed=seed), rules.render_style(name), notes=[NOTES[name]]
    )
    if name == "random":
        alg.sampler = HyperoptSampler(params, maximize, "random", seed=seed, parallel=parallel)
    elif name == "tpe":
        kw: dict[str, Any] = {k: settings[k] for k in ("gamma", "prior_weight", "n_EI_candidates") if k in settings}
        alg.sampler = HyperoptSampler(params, maximize, "tpe", seed=seed, parallel=parallel, **kw)
    elif name == "multivariate-tpe":
        kw = {k: settings[k] for k in ("n_startup_trials", "n_ei_candidates") if k in settings}
        alg.sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=seed, **kw)
    elif name == "grid":
        grid = rules.grid_points(params)
        alg.grid_size = rules.grid_size(params)
        # Optuna's grid stores the points themselves: record doubles without a step so np.arange drift fits.
        alg.distributions = {
            p.name: (FloatDistribution(min(grid[p.name]), max(grid[p.name])) if p.type == "double" else dists[p.name])
            for p in params
        }
        alg.sampler = _GridSampler(grid, seed=seed)
    elif name == "cmaes":
        import warnings

        strategy = settings["restart_strategy"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alg.sampler = optuna.samplers.CmaEsSampler(
                sigma0=settings.get("sigma"),
                seed=seed,
                restart_strategy=None if strategy == "none" else strategy,
                warn_independent_sampling=False,
            )
    elif name == "sobol":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alg.sampler = optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=False,
                seed=seed,
                warn_independent_sampling=False,
                warn_asynchronous_seeding=False,
            )
    elif name == "bayesianoptimization":
        alg.sampler = SkoptSampler(
            params,
            maximize,
            seed=seed,
            base_estimator=settings["base_estimator"],
            n_initial_points=settings["n_initial_points"],
            acq_func=settings["acq_func"],
            acq_optimizer=settings["acq_optimizer"],
        )
    elif name == "hyperband":
        plan = rules.hyperband_plan(exp.algorithm_settings)
        if plan is None:  # the linter says which setting; lint.load refuses the Experiment before this
            raise UserError("spec.algorithm.algorithmSettings: hyperband needs r_l > 0, resource_name and eta > 1")
        alg.hyperband = Hyperband(params, maximize, plan, seed=seed)
        res = next(p for p in params if p.name == plan.resource_name)
        alg.distributions[res.name] = IntDistribution(0, max(int(plan.r_l), int(res.max or 1)))
    elif rules.is_extension(name):
        from pipeline.local.suggestion import ServiceDriver

        alg.service = ServiceDriver(exp)
    return alg
