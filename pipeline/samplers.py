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

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import UserError
from pipeline.render import style_for_algorithm

SUPPORTED = ("random", "tpe", "multivariate-tpe", "grid", "cmaes", "sobol", "bayesianoptimization", "hyperband")
REFUSED = {"enas": "neural architecture search", "darts": "neural architecture search",
           "pbt": "population based training (needs trial checkpoints and restarts)"}
SETTINGS = {
    "random": {"random_state"},
    "tpe": {"gamma", "prior_weight", "n_EI_candidates", "random_state"},
    "multivariate-tpe": {"n_startup_trials", "n_ei_candidates", "random_state"},
    "grid": {"random_state"},
    "cmaes": {"random_state", "sigma", "restart_strategy"},
    "sobol": set(),
    "bayesianoptimization": {"base_estimator", "n_initial_points", "acq_func", "acq_optimizer", "random_state"},
    "hyperband": {"r_l", "resource_name", "eta"},
}
WAIT = "wait"  # a proposal: nothing to run until running trials finish (hyperband rungs)


@dataclass(frozen=True)
class Param:
    """One entry of spec.parameters, parsed."""

    name: str
    type: str                       # double | int | discrete | categorical
    min: float | None = None
    max: float | None = None
    step: float | None = None
    distribution: str = "uniform"
    choices: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, p: dict[str, Any], where: str) -> "Param":
        fs = p.get("feasibleSpace") or {}
        ptype = p.get("parameterType")
        if ptype in ("discrete", "categorical"):
            return cls(p["name"], ptype, choices=tuple(str(v) for v in fs.get("list") or []))
        if ptype not in ("double", "int"):
            raise UserError(f"{where}.parameterType: {ptype!r} (expected double, int, discrete, categorical)")

        def num(key):
            v = fs.get(key)
            if v in (None, ""):
                return None
            try:
                return float(v)
            except (TypeError, ValueError):
                raise UserError(f"{where}.feasibleSpace.{key}: {v!r} is not a number") from None

        lo, hi, step = num("min"), num("max"), num("step")
        if lo is None or hi is None:
            raise UserError(f"{where}.feasibleSpace: the local dry-run needs both min and max")
        if lo > hi:
            raise UserError(f"{where}.feasibleSpace: min {lo} > max {hi}")
        return cls(p["name"], ptype, lo, hi, step, fs.get("distribution") or "uniform")


def parse_params(exp: dict[str, Any]) -> list[Param]:
    return [Param.from_spec(p, f"spec.parameters[{i}]") for i, p in enumerate(exp["spec"].get("parameters") or [])]


def distribution_for(p: Param, algorithm: str = "random") -> BaseDistribution:
    """The Optuna distribution that records `p` (as Katib's Optuna service builds it)."""
    if p.type in ("discrete", "categorical"):
        return CategoricalDistribution(p.choices)
    log = p.distribution in ("logUniform", "logNormal")
    if p.distribution in ("normal", "logNormal"):
        if algorithm not in ("random", "tpe"):
            raise UserError(f"parameter {p.name}: distribution {p.distribution} is only supported by the hyperopt "
                            f"algorithms (random, tpe), not {algorithm} (Katib rejects it too)")
        if log and p.min <= 0:
            raise UserError(f"parameter {p.name}: logNormal needs min > 0")
        # hyperopt's normal is unbounded: record it in a +-5 sigma window.
        lo, hi = (math.log(p.min), math.log(p.max)) if log else (p.min, p.max)
        mu, sigma = (lo + hi) / 2, (hi - lo) / 6
        lo, hi = mu - 5 * sigma, mu + 5 * sigma
        if log:
            return FloatDistribution(math.exp(lo), math.exp(hi), log=True)
        return FloatDistribution(lo, hi) if p.type == "double" else IntDistribution(math.floor(lo), math.ceil(hi))
    if p.type == "int":
        lo, hi = int(p.min), int(p.max)
        if log:
            return IntDistribution(max(1, lo), hi, log=True)
        step = int(p.step) if p.step else 1
        return IntDistribution(lo, lo + (hi - lo) // step * step, step=step)
    if log:
        if p.max <= 0:
            raise UserError(f"parameter {p.name}: logUniform needs max > 0")
        return FloatDistribution(max(1e-10, p.min), p.max, log=True)
    if p.step:
        import warnings

        with warnings.catch_warnings():  # float drift in (high - low) / step: Optuna adjusts high itself
            warnings.simplefilter("ignore")
            return FloatDistribution(p.min, p.min + math.floor((p.max - p.min) / p.step + 1e-9) * p.step,
                                     step=p.step)
    return FloatDistribution(p.min, p.max)


def to_optuna(value: Any, dist: BaseDistribution) -> Any:
    """A Katib value as a value `dist` accepts (clipped / snapped for the record only)."""
    if isinstance(dist, CategoricalDistribution):
        return str(value) if str(value) in dist.choices else dist.choices[0]
    v = float(value)
    v = min(max(v, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        return int(dist.low + round((round(v) - dist.low) / dist.step) * dist.step)
    if dist.step:
        k = round((v - dist.low) / dist.step)
        return min(dist.low + k * dist.step, dist.high)
    return v


def settings_of(exp: dict[str, Any]) -> dict[str, str]:
    alg = exp["spec"]["algorithm"]
    name = alg.get("algorithmName")
    out = {}
    for s in alg.get("algorithmSettings") or []:
        # Katib's hyperband service ignores settings it does not know (random_state is honoured locally).
        if s.get("name") not in SETTINGS.get(name, set()) and name != "hyperband":
            raise UserError(f"spec.algorithm.algorithmSettings: unknown setting {s.get('name')} for algorithm {name}")
        out[s["name"]] = str(s.get("value"))
    return out


def _num(settings: dict[str, str], key: str, kind=float, default=None):
    if key not in settings:
        return default
    try:
        return kind(float(settings[key])) if kind is int else kind(settings[key])
    except ValueError:
        raise UserError(f"spec.algorithm.algorithmSettings: {key}: {settings[key]!r} is not a number") from None


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

    def _ensure_rng(self, study: optuna.Study) -> np.random.RandomState:
        if self._rng is None:
            # A resumed run continues a different stream than the first one.
            base = self.seed if self.seed is not None else np.random.SeedSequence().entropy % (2**31)
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
        import hyperopt  # noqa: F401 - imported once per run, not per trial

        self.algorithm = algorithm
        self.parallel = parallel
        self.tpe_settings = tpe_settings
        self._domain = None

    def _space(self):
        from hyperopt import hp

        space = {}
        for p in self.params:
            if p.type in ("discrete", "categorical"):
                space[p.name] = hp.choice(p.name, list(p.choices))
            elif p.distribution == "logUniform":
                lo, hi = math.log(p.min), math.log(p.max)
                space[p.name] = hp.qloguniform(p.name, lo, hi, p.step) if p.step else hp.loguniform(p.name, lo, hi)
            elif p.distribution == "normal":
                mu, sigma = (p.min + p.max) / 2, (p.max - p.min) / 6
                space[p.name] = hp.qnormal(p.name, mu, sigma, p.step) if p.step else hp.normal(p.name, mu, sigma)
            elif p.distribution == "logNormal":
                lo, hi = math.log(p.min), math.log(p.max)
                mu, sigma = (lo + hi) / 2, (hi - lo) / 6
                space[p.name] = hp.qlognormal(p.name, mu, sigma, p.step) if p.step else hp.lognormal(p.name, mu, sigma)
            elif p.step:
                space[p.name] = hp.quniform(p.name, p.min, p.max, p.step)
            elif p.type == "int":
                space[p.name] = hp.uniformint(p.name, p.min, p.max)
            else:
                space[p.name] = hp.uniform(p.name, p.min, p.max)
        return space

    def propose(self, study):
        import hyperopt

        if self._domain is None:
            self._domain = hyperopt.Domain(None, self._space(), pass_expr_memo_ctrl=None)
        trials = hyperopt.Trials()
        hist = self.history(study)
        if hist:
            tids = trials.new_trial_ids(len(hist))
            specs, results, miscs = [], [], []
            for tid, (assign, value) in zip(tids, hist):
                vals = {}
                for p in self.params:
                    v = assign[p.name]
                    if p.type in ("discrete", "categorical"):
                        vals[p.name] = [list(p.choices).index(v)] if v in p.choices else [0]
                    elif p.type == "int":
                        vals[p.name] = [int(float(v))]
                    else:
                        vals[p.name] = [float(v)]
                miscs.append({"tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                              "idxs": {p.name: [tid] for p in self.params}, "vals": vals})
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
            doc = hyperopt.tpe.suggest(new_id, self._domain, trials, seed, n_startup_jobs=self.parallel,
                                       **self.tpe_settings)[0]
        else:
            doc = hyperopt.rand.suggest(new_id, self._domain, trials, seed)[0]
        out = {}
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

    def __init__(self, params, maximize, seed=None, base_estimator="GP", n_initial_points=10,
                 acq_func="gp_hedge", acq_optimizer="auto"):
        super().__init__(params, maximize, seed)
        import skopt

        dims = []
        for p in params:
            if p.type == "int":
                dims.append(skopt.space.Integer(int(p.min), int(p.max), name=p.name))
            elif p.type == "double":
                if p.min <= 0:
                    raise UserError(f"parameter {p.name}: Katib's bayesianoptimization samples every double "
                                    f"log-uniformly, so min must be > 0 (found {p.min})")
                # Katib's skopt service uses log-uniform for every double, whatever `distribution` says.
                dims.append(skopt.space.Real(p.min, p.max, "log-uniform", name=p.name))
            else:
                dims.append(skopt.space.Categorical(list(p.choices), name=p.name))
        self._optimizer = skopt.Optimizer(dims, base_estimator=base_estimator, n_initial_points=n_initial_points,
                                          acq_func=acq_func, acq_optimizer=acq_optimizer, random_state=seed)
        self._told: int = 0

    def propose(self, study):
        hist = self.history(study)
        new = hist[self._told:]
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
        x = self._optimizer.ask()
        out = {}
        for p, v in zip(self.params, x):
            out[p.name] = int(v) if p.type == "int" else float(v) if p.type == "double" else str(v)
        return out


# ---------------------------------------------------------------- hyperband
@dataclass
class HyperbandState:
    eta: float
    r_l: float
    resource: str
    s_max: int
    s: int = -2
    i: int = 0
    n: int = 0
    r: float = 0.0
    rung: int = 0
    queue: list[dict[str, Any]] = field(default_factory=list)
    issued: int = 0  # trials issued in the current rung


class Hyperband:
    """Katib's hyperband bracket schedule: a master rung of n random configs at
    resource r, then the top ceil(n_i/eta) of each finished rung at r*eta^i."""

    def __init__(self, params: list[Param], maximize: bool, settings: dict[str, str], seed: int | None = None):
        if "r_l" not in settings or "resource_name" not in settings:
            raise UserError("spec.algorithm.algorithmSettings: hyperband needs r_l and resource_name")
        self.params = params
        self.maximize = maximize
        eta = int(float(settings.get("eta", 3)))
        eta = eta if eta > 0 else 3
        r_l = _num(settings, "r_l")
        if r_l is None or r_l <= 0:
            raise UserError("spec.algorithm.algorithmSettings: r_l must be a positive number")
        resource = settings["resource_name"]
        if resource not in {p.name for p in params}:
            raise UserError(f"spec.algorithm.algorithmSettings: resource_name {resource!r} must name a parameter")
        s_max = int(math.log(r_l) / math.log(eta)) if eta > 1 else 0
        self.state = HyperbandState(eta=eta, r_l=r_l, resource=resource, s_max=s_max)
        self.rng = np.random.RandomState(seed)

    def min_parallel(self) -> int:
        return int(math.ceil(self.state.eta ** self.state.s_max))

    def _bracket(self, s: int) -> None:
        st = self.state
        st.s, st.i = s, 0
        st.n = int(math.ceil(float(st.s_max + 1) * (st.eta ** s) / float(s + 1)))
        st.r = st.r_l * st.eta ** (-s)

    def _random(self) -> dict[str, Any]:
        out = {}
        for p in self.params:
            if p.type in ("discrete", "categorical"):
                out[p.name] = p.choices[self.rng.randint(len(p.choices))]
            elif p.distribution == "logUniform":
                v = math.exp(self.rng.uniform(math.log(p.min), math.log(p.max)))
                out[p.name] = int(round(v)) if p.type == "int" else v
            elif p.type == "int":
                out[p.name] = int(self.rng.randint(int(p.min), int(p.max) + 1))
            else:
                out[p.name] = float(self.rng.uniform(p.min, p.max))
        return out

    def propose(self, finished: list[tuple[int, dict[str, Any], float | None]]):
        """`finished`: (rung, assignments, objective or None) of finished trials.
        Returns a dict of values (+ '_rung'), WAIT or None (schedule done)."""
        st = self.state
        if st.s == -2:
            self._bracket(st.s_max)
            st.queue = [self._with_resource(self._random(), int(st.r)) for _ in range(st.n)]
            st.rung, st.issued = 1, 0
        if not st.queue:
            done = [f for f in finished if f[0] == st.rung]
            if len(done) < st.issued:
                return WAIT
            if st.i >= st.s:  # bracket over
                if st.s - 1 < 0:
                    return None
                self._bracket(st.s - 1)
                st.queue = [self._with_resource(self._random(), int(st.r)) for _ in range(st.n)]
            else:
                n_i = math.ceil(st.n * st.eta ** (-st.i))
                top = int(math.ceil(n_i / st.eta))
                st.i += 1
                r_i = int(st.r * st.eta ** st.i)
                ranked = sorted((f for f in done if f[2] is not None and math.isfinite(f[2])),
                                key=lambda f: f[2], reverse=self.maximize)
                st.queue = [self._with_resource(dict(f[1]), r_i) for f in ranked[:top]]
                if not st.queue:
                    return None
            st.rung += 1
            st.issued = 0
        st.issued += 1
        values = st.queue.pop(0)
        values["_rung"] = st.rung
        return values

    def _with_resource(self, values: dict[str, Any], r: int) -> dict[str, Any]:
        values.pop("_rung", None)
        values[self.state.resource] = r
        return values


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler without its study.stop() (only valid inside study.optimize); the runner
    counts grid points itself and ends with ExperimentSuggestionEndReached."""

    def after_trial(self, study, trial, state, values):
        pass


# ---------------------------------------------------------------- the algorithm object
@dataclass
class Algorithm:
    """What the runner asks for the next trial's assignments."""

    name: str
    params: list[Param]
    distributions: dict[str, BaseDistribution]
    sampler: optuna.samplers.BaseSampler
    style: str
    grid_size: int | None = None
    hyperband: Hyperband | None = None
    notes: list[str] = field(default_factory=list)


def grid_points(p: Param) -> list[Any]:
    """Katib's grid values for one parameter (np.arange for doubles, so 0.30000000000000004 is kept)."""
    if p.type in ("discrete", "categorical"):
        return list(p.choices)
    if p.type == "int":
        return list(range(int(p.min), int(p.max) + 1, int(p.step) if p.step else 1))
    if not p.step:
        raise UserError(f"parameter {p.name}: grid needs a step for every double parameter "
                        "(For discrete search space, all parameters must include step)")
    values = np.arange(p.min, p.max + p.step, p.step)
    if values[-1] > p.max:
        values = values[:-1]
    return [float(v) for v in values]


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
    "hyperband": "hyperband: Katib's bracket schedule reimplemented (master rungs of random configs, top 1/eta "
                 "promoted); a failed trial is ranked out instead of stopping the schedule",
}


def build_algorithm(exp: dict[str, Any], parallel: int | None = None) -> Algorithm:
    """The local counterpart of the Experiment's search algorithm."""
    spec = exp["spec"]
    name = (spec.get("algorithm") or {}).get("algorithmName")
    if name in REFUSED:
        raise UserError(f"spec.algorithm.algorithmName: {name!r} ({REFUSED[name]}) is not supported by the local "
                        f"dry-run; supported: {', '.join(SUPPORTED)}")
    if name not in SUPPORTED:
        raise UserError(f"spec.algorithm.algorithmName: {name!r} is not a supported algorithm; "
                        f"supported: {', '.join(SUPPORTED)}")
    settings = settings_of(exp)
    params = parse_params(exp)
    maximize = spec["objective"]["type"] == "maximize"
    seed = _num(settings, "random_state", int)
    parallel = parallel or int(spec.get("parallelTrialCount", 3))
    dists = {p.name: distribution_for(p, name) for p in params}
    alg = Algorithm(name, params, dists, optuna.samplers.RandomSampler(seed=seed), style_for_algorithm(name),
                    notes=[NOTES[name]])
    if name == "random":
        alg.sampler = HyperoptSampler(params, maximize, "random", seed=seed, parallel=parallel)
    elif name == "tpe":
        kw = {}
        if "gamma" in settings:
            kw["gamma"] = _num(settings, "gamma")
            if not 0 < kw["gamma"] < 1:
                raise UserError("spec.algorithm.algorithmSettings: gamma should be in the range of (0, 1)")
        if "prior_weight" in settings:
            kw["prior_weight"] = _num(settings, "prior_weight")
        if "n_EI_candidates" in settings:
            kw["n_EI_candidates"] = _num(settings, "n_EI_candidates", int)
        alg.sampler = HyperoptSampler(params, maximize, "tpe", seed=seed, parallel=parallel, **kw)
    elif name == "multivariate-tpe":
        kw = {"multivariate": True, "constant_liar": True, "seed": seed}
        if "n_startup_trials" in settings:
            kw["n_startup_trials"] = _num(settings, "n_startup_trials", int)
        if "n_ei_candidates" in settings:
            kw["n_ei_candidates"] = _num(settings, "n_ei_candidates", int)
        alg.sampler = optuna.samplers.TPESampler(**kw)
    elif name == "grid":
        grid = {p.name: grid_points(p) for p in params}
        alg.grid_size = int(np.prod([len(v) for v in grid.values()])) if grid else 0
        # Optuna's grid stores the points themselves: record doubles without a step so np.arange drift fits.
        alg.distributions = {p.name: (FloatDistribution(min(grid[p.name]), max(grid[p.name]))
                                      if p.type == "double" else dists[p.name]) for p in params}
        alg.sampler = _GridSampler(grid, seed=seed)
    elif name == "cmaes":
        numeric = [p for p in params if p.type in ("int", "double")]
        if len(numeric) < 2:
            raise UserError("spec.parameters: cmaes needs at least two int/double parameters")
        strategy = settings.get("restart_strategy", "none")
        if strategy not in ("ipop", "bipop", "none", "None"):
            raise UserError(f"spec.algorithm.algorithmSettings: restart_strategy {strategy!r} "
                            "(expected ipop, bipop or none)")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alg.sampler = optuna.samplers.CmaEsSampler(
                sigma0=_num(settings, "sigma"), seed=seed,
                restart_strategy=None if strategy.lower() == "none" else strategy,
                warn_independent_sampling=False)
    elif name == "sobol":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alg.sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=False, seed=seed,
                                                     warn_independent_sampling=False,
                                                     warn_asynchronous_seeding=False)
    elif name == "bayesianoptimization":
        estimator = settings.get("base_estimator", "GP")
        if estimator not in ("GP", "RF", "ET", "GBRT"):
            raise UserError(f"spec.algorithm.algorithmSettings: base_estimator {estimator!r} (expected GP, RF, ET, GBRT)")
        acq = settings.get("acq_func", "gp_hedge")
        if acq not in ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"):
            raise UserError(f"spec.algorithm.algorithmSettings: acq_func {acq!r}")
        opt = settings.get("acq_optimizer", "auto")
        if opt not in ("auto", "sampling", "lbfgs"):
            raise UserError(f"spec.algorithm.algorithmSettings: acq_optimizer {opt!r}")
        alg.sampler = SkoptSampler(params, maximize, seed=seed, base_estimator=estimator,
                                   n_initial_points=_num(settings, "n_initial_points", int, 10),
                                   acq_func=acq, acq_optimizer=opt)
    elif name == "hyperband":
        alg.hyperband = Hyperband(params, maximize, settings, seed=seed)
        if parallel < alg.hyperband.min_parallel():
            raise UserError(f"spec.parallelTrialCount: hyperband needs parallelTrialCount not less than "
                            f"{alg.hyperband.min_parallel()} (found {parallel})")
        res = next(p for p in params if p.name == alg.hyperband.state.resource)
        alg.distributions[res.name] = IntDistribution(0, max(int(alg.hyperband.state.r_l), int(res.max or 1)))
    return alg
