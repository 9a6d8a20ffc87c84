"""Each Katib v0.19 suggestion service's rules, in one table.

What each service accepts as `algorithmSettings` (`ValidateAlgorithmSettings`),
the defaults it uses, and the search-space facts it depends on: hyperopt
(random, tpe), Optuna (multivariate-tpe, grid), scikit-optimize
(bayesianoptimization), goptuna (cmaes, sobol), Katib's own hyperband, and
this project's own `asha` (`pipeline.suggestion`, registered in katib-config
by deploy/katib-config/asha.yaml: an extension, not a Katib built-in).
The linter turns these rules into findings with field paths; the local run
reads its typed settings from the same table. Nothing here reports or raises
on its own except `typed_settings` on a value the linter would have rejected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import UserError
from pipeline.katib.experiment import Param


def py_int(text: Any) -> int | None:
    """Python's int(str): what the Python services accept."""
    try:
        return int(str(text))
    except ValueError:
        return None


def py_float(text: Any) -> float | None:
    try:
        return float(str(text))
    except ValueError:
        return None


def go_atoi(text: Any) -> int | None:
    """Go's strconv.Atoi: what goptuna accepts."""
    return int(text) if re.fullmatch(r"[+-]?\d+", str(text)) else None


@dataclass(frozen=True)
class Setting:
    """One `algorithmSettings` entry a service knows."""

    parse: Callable[[Any], Any]  # text -> value, None when it does not parse
    ok: Callable[[Any], bool] = lambda value: True
    # The service's message when parse or ok fails: a format string, or a function of
    # (name, text, parsed value or None, algorithm) for rules with two messages.
    problem: str | Callable[[str, Any, Any, str], str] = "{name} {value!r} is not valid"
    default: Any = None

    def check(self, name: str, text: Any, algorithm: str) -> str | None:
        """The service's message for a rejected value, or None."""
        value = self.parse(text)
        if value is not None and self.ok(value):
            return None
        if callable(self.problem):
            return self.problem(name, text, value, algorithm)
        return self.problem.format(name=name, value=text, algorithm=algorithm)


def _int_at_least(minimum: int, default: Any = None) -> Setting:
    def problem(name, text, value, algorithm):
        if value is None:
            return f"failed to validate {name}({text}) for {algorithm}: not an integer"
        return f"{name} should be >= {minimum} for {algorithm}, found {text}"

    return Setting(py_int, lambda v: v >= minimum, problem, default)


def _choice(choices: tuple[str, ...], default: str, what: str) -> Setting:
    return Setting(
        str,
        lambda v: v in choices,
        "{name} {value!r} is not supported in " + what + " (" + ", ".join(choices) + ")",
        default,
    )


RANDOM_STATE = _int_at_least(0)
SKOPT_CHOICES = {
    "base_estimator": ("GP", "RF", "ET", "GBRT"),
    "acq_func": ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
    "acq_optimizer": ("auto", "sampling", "lbfgs"),
}
CMAES_RESTART_STRATEGIES = ("ipop", "bipop", "none")
# Settings hyperband writes back into its own Suggestion; harmless in an Experiment.
HYPERBAND_BOOKKEEPING = frozenset({"s_max", "b_l", "r", "n", "current_s", "current_i", "evaluating_trials"})
# The backend of the suggestion services this project ships (pipeline.suggestion), and the setting
# asha writes back into its Suggestion (the promotions it issued; see pipeline.suggestion.asha).
EXTENSION_BACKEND = "katib-digits"
ASHA_SAMPLERS = ("random", "tpe")
ASHA_PROMOTED = "asha_promoted"


@dataclass(frozen=True)
class Service:
    """One suggestion service's rules."""

    backend: str  # hyperopt | optuna | skopt | goptuna | hyperband
    settings: dict[str, Setting]
    unknown_rejected: bool = True  # False: the service ignores unknown settings (we warn)
    ignored: frozenset[str] = frozenset()
    render: str = "python"  # how values are written into the trial: python str() or Go FormatFloat


ALGORITHMS: dict[str, Service] = {
    "random": Service("hyperopt", {"random_state": RANDOM_STATE}),
    "tpe": Service(
        "hyperopt",
        {
            "gamma": Setting(py_float, lambda v: 0 < v < 1, "gamma should be in the range of (0, 1), found {value!r}"),
            "prior_weight": Setting(
                py_float, lambda v: v > 0, "prior_weight should be greater than zero, found {value!r}"
            ),
            "n_EI_candidates": _int_at_least(1),
            "random_state": RANDOM_STATE,
        },
    ),
    "multivariate-tpe": Service(
        "optuna",
        {"n_startup_trials": _int_at_least(0), "n_ei_candidates": _int_at_least(0), "random_state": RANDOM_STATE},
    ),
    "grid": Service("optuna", {"random_state": RANDOM_STATE}),
    "cmaes": Service(
        "goptuna",
        {
            "random_state": Setting(go_atoi, problem="random_state {value!r} is not an integer"),
            "sigma": Setting(py_float, problem="sigma {value!r} is not a number"),
            "restart_strategy": Setting(
                str,
                lambda v: v in CMAES_RESTART_STRATEGIES,
                "invalid restart_strategy {value!r} (ipop, bipop, none)",
                "none",
            ),
        },
        unknown_rejected=False,
        render="goptuna",
    ),
    "sobol": Service("goptuna", {}, unknown_rejected=False, render="goptuna"),
    "bayesianoptimization": Service(
        "skopt",
        {
            "base_estimator": _choice(SKOPT_CHOICES["base_estimator"], "GP", "Bayesian optimization"),
            "acq_func": _choice(SKOPT_CHOICES["acq_func"], "gp_hedge", "Bayesian optimization"),
            "acq_optimizer": _choice(SKOPT_CHOICES["acq_optimizer"], "auto", "Bayesian optimization"),
            "n_initial_points": _int_at_least(0, 10),
            "random_state": RANDOM_STATE,
        },
    ),
    "hyperband": Service(
        "hyperband",
        {
            "r_l": Setting(py_float, lambda v: v > 0, "r_l must be a positive number, found {value!r}"),
            "eta": Setting(
                py_float,
                lambda v: hyperband_eta(v) != 1,
                lambda name, text, value, _: (
                    f"eta must be a number, found {text!r}"
                    if value is None
                    else "eta 1 makes hyperband divide by log(1) = 0; use 2 or more"
                ),
                3,
            ),
            "resource_name": Setting(str),
        },
        unknown_rejected=False,
        ignored=HYPERBAND_BOOKKEEPING,
    ),
    # max_resource has no fixed default: it is the resource parameter's feasibleSpace.max (asha_plan).
    "asha": Service(
        EXTENSION_BACKEND,
        {
            "eta": _int_at_least(2, 3),
            "min_resource": _int_at_least(1, 1),
            "max_resource": _int_at_least(2),
            "resource_name": Setting(str, lambda v: v != "", "{name} must name a parameter, found {value!r}", "epochs"),
            "random_state": RANDOM_STATE,
            "base_sampler": _choice(ASHA_SAMPLERS, "random", "asha"),
        },
        ignored=frozenset({ASHA_PROMOTED}),
    ),
}
# Katib algorithms whose services check their own settings and space (not modelled offline).
UNMODELLED = ("pbt", "enas", "darts")
HYPERBAND_REQUIRED = ("r_l", "resource_name")
CMAES_MIN_NUMERIC_PARAMETERS = 2


def is_extension(algorithm: str) -> bool:
    """True for this project's own services: Katib lacks them until katib-config registers them."""
    service = ALGORITHMS.get(algorithm)
    return service is not None and service.backend == EXTENSION_BACKEND


def render_style(algorithm: str) -> str:
    service = ALGORITHMS.get(algorithm)
    return service.render if service else "python"


SETTINGS_PATH = "spec.algorithm.algorithmSettings"


def typed_settings(algorithm: str, settings: dict[str, str]) -> dict[str, Any]:
    """The service's settings as values, defaults filled in; unknown names are dropped.
    Raises UserError on a value the linter reports as an error (for callers that skip it)."""
    service = ALGORITHMS[algorithm]
    out = {name: s.default for name, s in service.settings.items() if s.default is not None}
    for name, text in settings.items():
        rule = service.settings.get(name)
        if rule is None:
            continue
        problem = rule.check(name, text, algorithm)
        if problem:
            raise UserError(f"{SETTINGS_PATH}: {problem}")
        out[name] = rule.parse(text)
    return out


# --- search-space facts ---------------------------------------------------------------------------


def grid_points(params: list[Param]) -> dict[str, list[Any]]:
    """The grid Katib's Optuna service builds (`convert_to_combinations`): np.arange for doubles, so
    0.30000000000000004 is kept. ValueError names the parameter without a step."""
    combos: dict[str, list[Any]] = {}
    for p in params:
        if not p.numeric:
            combos[p.name] = list(p.choices)
        elif p.type == "int":
            step = int(p.step) if p.step else 1
            if step <= 0:
                raise ValueError(f"parameter {p.name!r}: step must be > 0")
            combos[p.name] = list(range(int(p.low), int(p.high) + 1, step))
        else:
            if not p.step:
                raise ValueError(f"parameter {p.name!r}: step is nil; for a grid every double needs a step")
            if p.step <= 0:
                raise ValueError(f"parameter {p.name!r}: step must be > 0")
            values = np.arange(p.low, p.high + p.step, p.step)
            if len(values) and values[-1] > p.high:
                values = values[:-1]
            combos[p.name] = [float(v) for v in values]
    return combos


def grid_size(params: list[Param]) -> int:
    return math.prod(len(v) for v in grid_points(params).values())


def grid_budget_problem(params: list[Param], max_trials: int) -> str | None:
    """Katib's grid service refuses a maxTrialCount above the number of grid points."""
    combos = grid_points(params)
    size = math.prod(len(v) for v in combos.values())
    if max_trials <= size:
        return None
    return (
        f"Max Trial Count: {max_trials} > all possible search combinations: {size} "
        f"({' x '.join(f'{n}={len(v)}' for n, v in combos.items())})"
    )


@dataclass(frozen=True)
class HyperbandPlan:
    r_l: float
    eta: int
    resource_name: str
    s_max: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "s_max", int(math.log(self.r_l) / math.log(self.eta)))

    @property
    def min_parallel(self) -> int:
        """The smallest parallelTrialCount Katib's hyperband service accepts (eta ** s_max)."""
        return int(math.ceil(self.eta**self.s_max))


def hyperband_eta(text: Any) -> int:
    """Katib's `int(float(eta))`, with a non-positive eta falling back to 3."""
    value = int(py_float(text) or 0)
    return value if value > 0 else 3


def hyperband_plan(settings: dict[str, str]) -> HyperbandPlan | None:
    """The bracket plan, or None when r_l / resource_name / eta are missing or invalid (the linter says why)."""
    if any(k not in settings for k in HYPERBAND_REQUIRED):
        return None
    r_l = py_float(settings["r_l"])
    eta = hyperband_eta(settings.get("eta", 3))
    if r_l is None or r_l <= 0 or eta == 1 or py_float(settings.get("eta", 3)) is None:
        return None
    return HyperbandPlan(r_l, eta, settings["resource_name"])


def hyperband_min_parallel(r_l: float, eta: int) -> int:
    return HyperbandPlan(r_l, eta, "").min_parallel


@dataclass(frozen=True)
class AshaPlan:
    """asha's settings, checked and typed: the rungs' resources r_k = min_resource * eta**k, the
    last one capped at max_resource."""

    eta: int
    min_resource: int
    max_resource: int
    resource_name: str
    random_state: int
    base_sampler: str

    @property
    def rungs(self) -> tuple[int, ...]:
        out = [self.min_resource]
        while out[-1] < self.max_resource:
            out.append(min(out[-1] * self.eta, self.max_resource))
        return tuple(out)


def asha_problems(settings: dict[str, str], params: list[Param]) -> list[tuple[str, str]]:
    """(setting name, message) for each asha rule the settings break, the single-value rules of
    ALGORITHMS["asha"] included: what ValidateAlgorithmSettings rejects, in one place."""
    service = ALGORITHMS["asha"]
    out = [
        (name, f"unknown setting {name!r} for algorithm asha (known: {', '.join(service.settings)})")
        for name in settings
        if name not in service.settings and name not in service.ignored
    ]
    out += [
        (name, problem)
        for name, text in settings.items()
        if name in service.settings
        for problem in [service.settings[name].check(name, text, "asha")]
        if problem
    ]
    if out:
        return out
    typed = typed_settings("asha", settings)
    resource = typed["resource_name"]
    param = next((p for p in params if p.name == resource), None)
    if param is None:
        return [
            (
                "resource_name",
                f"resource_name {resource!r} must be one of spec.parameters "
                f"({', '.join(p.name for p in params) or 'none'})",
            )
        ]
    if param.type != "int":
        return [
            (
                "resource_name",
                f"resource_name {resource!r} must be an int parameter (the epochs budget), found {param.type}",
            )
        ]
    low, high = int(param.low), int(param.high)
    top = typed.get("max_resource", high)
    if typed["min_resource"] < low:
        out.append(("min_resource", f"min_resource {typed['min_resource']} is below parameter {resource}'s min {low}"))
    if top > high:
        out.append(("max_resource", f"max_resource {top} is above parameter {resource}'s max {high}"))
    if top <= typed["min_resource"]:
        out.append(
            (
                "max_resource",
                f"max_resource {top} must be greater than min_resource "
                f"{typed['min_resource']}" + ("" if "max_resource" in typed else f" (it defaults to {resource}'s max)"),
            )
        )
    return out


def asha_plan(settings: dict[str, str], params: list[Param], experiment_name: str = "") -> AshaPlan:
    """The typed plan; UserError naming the first broken setting. Without random_state the seed is
    derived from the experiment's name, so a restarted service makes the same decisions."""
    problems = asha_problems(settings, params)
    if problems:
        raise UserError(f"{SETTINGS_PATH}: {problems[0][1]}")
    typed = typed_settings("asha", settings)
    resource = next(p for p in params if p.name == typed["resource_name"])
    seed = typed.get("random_state")
    if seed is None:
        import zlib

        seed = zlib.crc32(experiment_name.encode())
    return AshaPlan(
        typed["eta"],
        typed["min_resource"],
        typed.get("max_resource", int(resource.high)),
        typed["resource_name"],
        seed,
        typed["base_sampler"],
    )


def min_parallel(algorithm: str, settings: dict[str, str]) -> int:
    """The lowest parallelTrialCount the algorithm's service accepts (1 for all but hyperband)."""
    if algorithm == "hyperband":
        plan = hyperband_plan(settings)
        return plan.min_parallel if plan else 1
    return 1
