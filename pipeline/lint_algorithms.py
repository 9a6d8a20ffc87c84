"""What each suggestion service checks when it starts (`ValidateAlgorithmSettings`)
and what makes its first suggestion fail, per backend of a standalone install:
hyperopt (random, tpe), Optuna (multivariate-tpe, grid), scikit-optimize
(bayesianoptimization), goptuna (cmaes, sobol), Katib's own hyperband.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np

from pipeline.lint_types import Findings, as_dict, as_int, as_list, settings_of

SETTINGS = "spec.algorithm.algorithmSettings"
# Settings hyperband writes back into its own Suggestion; harmless in an Experiment.
HYPERBAND_SETTINGS = {"r_l", "eta", "resource_name", "s_max", "b_l", "r", "n", "current_s", "current_i",
                      "evaluating_trials"}


def py_int(text: Any) -> int | None:
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
    return int(text) if re.fullmatch(r"[+-]?\d+", str(text)) else None


def _params(exp: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, as_dict(p)) for i, p in enumerate(as_list(as_dict(exp.get("spec")).get("parameters")))]


def _space(param: dict[str, Any]) -> dict[str, Any]:
    return as_dict(param.get("feasibleSpace"))


def _check_int_setting(found: Findings, i: int, name: str, value: Any, minimum: int, algorithm: str) -> None:
    number = py_int(value)
    if number is None:
        found.error(f"{SETTINGS}[{i}].value", f"failed to validate {name}({value}) for {algorithm}: not an integer")
    elif number < minimum:
        found.error(f"{SETTINGS}[{i}].value", f"{name} should be >= {minimum} for {algorithm}, found {value}")


def _unknown(found: Findings, i: int, name: str, algorithm: str, known: list[str]) -> None:
    found.error(f"{SETTINGS}[{i}].name", f"unknown setting {name!r} for algorithm {algorithm} "
                                         f"(known: {', '.join(known) or 'none'})")


# --- hyperopt: random, tpe ----------------------------------------------------------------------

def _hyperopt(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    known = ["random_state"] if algorithm == "random" else ["gamma", "prior_weight", "n_EI_candidates",
                                                            "random_state"]
    for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm")):
        if name == "random_state":
            _check_int_setting(found, i, name, value, 0, algorithm)
        elif algorithm == "tpe" and name == "gamma":
            number = py_float(value)
            if number is None or not 0 < number < 1:
                found.error(f"{SETTINGS}[{i}].value", f"gamma should be in the range of (0, 1), found {value!r}")
        elif algorithm == "tpe" and name == "prior_weight":
            number = py_float(value)
            if number is None or not number > 0:
                found.error(f"{SETTINGS}[{i}].value", f"prior_weight should be greater than zero, found {value!r}")
        elif algorithm == "tpe" and name == "n_EI_candidates":
            _check_int_setting(found, i, name, value, 1, algorithm)
        else:
            _unknown(found, i, name, algorithm, known)
    for i, param in _params(exp):
        space = _space(param)
        if param.get("parameterType") in ("int", "double") and space.get("distribution") in ("logUniform",
                                                                                              "logNormal"):
            low = py_float(space.get("min"))
            if low is not None and low <= 0:
                found.error(f"spec.parameters[{i}].feasibleSpace.min",
                            f"{space.get('min')}: hyperopt takes log(min) for a {space['distribution']} "
                            "distribution, so min must be > 0")


# --- Optuna: multivariate-tpe, grid -------------------------------------------------------------

def grid_points(exp: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid Katib's Optuna service builds (`convert_to_combinations`); ValueError names a parameter."""
    combos: dict[str, list[Any]] = {}
    for _, param in _params(exp):
        space, name = _space(param), str(param.get("name"))
        ptype = param.get("parameterType")
        if ptype == "int":
            step = py_int(space.get("step") or 1)
            low, high = py_int(space.get("min")), py_int(space.get("max"))
            if None in (low, high, step) or step <= 0:
                raise ValueError(f"parameter {name!r}: min, max and step must be integers, step > 0")
            combos[name] = list(range(low, high + 1, step))
        elif ptype == "double":
            if not space.get("step"):
                raise ValueError(f"parameter {name!r}: step is nil; for a grid every double needs a step")
            low, high, step = (py_float(space.get(k)) for k in ("min", "max", "step"))
            if None in (low, high, step) or step <= 0:
                raise ValueError(f"parameter {name!r}: min, max and step must be numbers, step > 0")
            values = np.arange(low, high + step, step)
            if len(values) and values[-1] > high:
                values = values[:-1]
            combos[name] = [float(v) for v in values]
        elif ptype in ("categorical", "discrete"):
            combos[name] = list(as_list(space.get("list")))
    return combos


def _optuna(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    spec = as_dict(exp["spec"])
    known = ["n_startup_trials", "n_ei_candidates", "random_state"] if algorithm != "grid" else ["random_state"]
    for i, name, value in settings_of(spec.get("algorithm")):
        if name in known:
            _check_int_setting(found, i, name, value, 0, algorithm)
        else:
            _unknown(found, i, name, algorithm, known)
    for i, param in _params(exp):
        space, ptype = _space(param), param.get("parameterType")
        dist = space.get("distribution")
        if ptype in ("int", "double") and dist in ("normal", "logNormal"):
            found.error(f"spec.parameters[{i}].feasibleSpace.distribution",
                        f"{dist!r}: Katib's Optuna service ({algorithm}) supports only uniform and logUniform")
        elif ptype in ("int", "double") and dist == "logUniform":
            low = py_float(space.get("min"))
            floor = 1 if ptype == "int" else 1e-10
            if low is not None and low < floor:
                found.note(f"spec.parameters[{i}].feasibleSpace.min",
                           f"{space.get('min')}: Katib's Optuna service raises a logUniform min to {floor}")
    if algorithm != "grid":
        return
    try:
        combos = grid_points(exp)
    except ValueError as exc:
        found.error("spec.parameters", f"grid: {exc}")
        return
    size = math.prod(len(v) for v in combos.values())
    max_trials = as_int(spec.get("maxTrialCount"))
    if max_trials is not None and max_trials > size:
        found.error("spec.maxTrialCount", f"{max_trials} > all possible grid combinations: {size} "
                                          f"({' x '.join(f'{n}={len(v)}' for n, v in combos.items())})")


# --- scikit-optimize: bayesianoptimization -------------------------------------------------------

_SKOPT_CHOICES = {"base_estimator": ("GP", "RF", "ET", "GBRT"),
                  "acq_func": ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
                  "acq_optimizer": ("auto", "sampling", "lbfgs")}


def _skopt(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    known = [*_SKOPT_CHOICES, "n_initial_points", "random_state"]
    for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm")):
        if name in _SKOPT_CHOICES:
            if value not in _SKOPT_CHOICES[name]:
                found.error(f"{SETTINGS}[{i}].value", f"{name} {value!r} is not supported in Bayesian "
                                                      f"optimization ({', '.join(_SKOPT_CHOICES[name])})")
        elif name in ("n_initial_points", "random_state"):
            _check_int_setting(found, i, name, value, 0, algorithm)
        else:
            _unknown(found, i, name, algorithm, known)
    for i, param in _params(exp):
        space, ptype = _space(param), param.get("parameterType")
        if ptype not in ("int", "double"):
            continue
        path = f"spec.parameters[{i}].feasibleSpace"
        low, high = py_float(space.get("min")), py_float(space.get("max"))
        if low is not None and high is not None and low >= high:
            found.error(f"{path}.min", f"scikit-optimize needs min < max, found {space.get('min')} >= "
                                       f"{space.get('max')}")
        if ptype == "double":
            if low is not None and low <= 0:
                found.error(f"{path}.min", f"{space.get('min')}: Katib's skopt service samples every double "
                                           "log-uniformly, so min must be > 0")
            if space.get("distribution") != "logUniform":
                found.note(f"{path}.distribution", f"{space.get('distribution')!r} is ignored: Katib's skopt "
                                                   "service samples every double log-uniformly")
        elif space.get("distribution") not in (None, "uniform"):
            found.note(f"{path}.distribution", f"{space.get('distribution')!r} is ignored: Katib's skopt service "
                                               "samples ints uniformly")


# --- goptuna: cmaes, sobol ------------------------------------------------------------------------

def _goptuna(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    params = _params(exp)
    if algorithm == "cmaes" and sum(p.get("parameterType") in ("int", "double") for _, p in params) < 2:
        found.error("spec.parameters", "CMA-ES only supports two or more dimensional continuous search space "
                                       "(int or double parameters)")
    names: set[Any] = set()
    for i, param in params:
        if param.get("name") in names:
            found.error(f"spec.parameters[{i}].name", f"duplicated parameter name: {param.get('name')}")
        names.add(param.get("name"))
        space = _space(param)
        if param.get("parameterType") == "int":
            for key in ("min", "max", "step"):
                if space.get(key) and go_atoi(space[key]) is None:
                    found.error(f"spec.parameters[{i}].feasibleSpace.{key}",
                                f"{space[key]!r}: goptuna parses int bounds with strconv.Atoi")
        if param.get("parameterType") in ("int", "double") and space.get("distribution") not in (None, "uniform"):
            found.note(f"spec.parameters[{i}].feasibleSpace.distribution",
                       f"{space.get('distribution')!r} is ignored: Katib's goptuna service ({algorithm}) "
                       "samples uniformly between min and max")
    for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm")):
        if algorithm == "cmaes" and name == "random_state":
            if go_atoi(value) is None:
                found.error(f"{SETTINGS}[{i}].value", f"random_state {value!r} is not an integer")
        elif algorithm == "cmaes" and name == "sigma":
            if py_float(value) is None:
                found.error(f"{SETTINGS}[{i}].value", f"sigma {value!r} is not a number")
        elif algorithm == "cmaes" and name == "restart_strategy":
            if value not in ("ipop", "bipop", "none"):
                found.error(f"{SETTINGS}[{i}].value", f"invalid restart_strategy {value!r} (ipop, bipop, none)")
        else:
            known = "random_state, sigma, restart_strategy" if algorithm == "cmaes" else "none"
            found.warning(f"{SETTINGS}[{i}].name", f"unknown setting {name!r} for algorithm {algorithm}: "
                                                   f"Katib's goptuna service ignores it (known: {known})")


# --- hyperband -------------------------------------------------------------------------------------

def hyperband_min_parallel(r_l: float, eta: int) -> int:
    """The smallest parallelTrialCount Katib's hyperband service accepts."""
    s_max = int(math.log(r_l) / math.log(eta))
    return int(math.ceil(eta ** s_max))


def _hyperband(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    spec = as_dict(exp["spec"])
    settings = {name: (i, value) for i, name, value in settings_of(spec.get("algorithm"))}
    for name, (i, _) in settings.items():
        if name not in HYPERBAND_SETTINGS:
            found.warning(f"{SETTINGS}[{i}].name", f"unknown setting {name!r} for algorithm hyperband: Katib "
                                                   "ignores it (known: r_l, eta, resource_name)")
    if "r_l" not in settings or "resource_name" not in settings:
        found.error(SETTINGS, "r_l and resource_name must be set for hyperband")
        return
    i, r_l_text = settings["r_l"]
    r_l = py_float(r_l_text)
    if r_l is None or r_l <= 0:
        found.error(f"{SETTINGS}[{i}].value", f"r_l must be a positive number, found {r_l_text!r}")
        return
    eta = 3
    if "eta" in settings:
        j, eta_text = settings["eta"]
        number = py_float(eta_text)
        if number is None:
            found.error(f"{SETTINGS}[{j}].value", f"eta must be a number, found {eta_text!r}")
            return
        eta = int(number) if int(number) > 0 else 3
        if eta == 1:
            found.error(f"{SETTINGS}[{j}].value", "eta 1 makes hyperband divide by log(1) = 0; use 2 or more")
            return
    needed = hyperband_min_parallel(r_l, eta)
    parallel = as_int(spec.get("parallelTrialCount"))
    if parallel is not None and parallel < needed:
        found.error("spec.parallelTrialCount", f"{parallel}: hyperband with r_l={r_l_text}, eta={eta} needs "
                                               f"parallelTrialCount >= {needed}")
    k, resource = settings["resource_name"]
    params = _params(exp)
    if resource not in {p.get("name") for _, p in params}:
        found.error(f"{SETTINGS}[{k}].value", f"resource_name {resource!r} must be one of spec.parameters")
    for i, param in params:
        space = _space(param)
        if param.get("parameterType") in ("int", "double") and space.get("distribution") not in (None, "uniform"):
            found.note(f"spec.parameters[{i}].feasibleSpace.distribution",
                       f"{space.get('distribution')!r} is ignored: Katib's hyperband samples uniformly")


BACKENDS: dict[str, Callable[[dict[str, Any], str, Findings], None]] = {
    "random": _hyperopt, "tpe": _hyperopt,
    "multivariate-tpe": _optuna, "grid": _optuna,
    "bayesianoptimization": _skopt,
    "cmaes": _goptuna, "sobol": _goptuna,
    "hyperband": _hyperband,
}


def check_algorithm_settings(exp: dict[str, Any]) -> Findings:
    found = Findings()
    name = as_dict(as_dict(exp.get("spec")).get("algorithm")).get("algorithmName")
    backend = BACKENDS.get(name)
    if backend:
        backend(exp, name, found)
    elif name in ("pbt", "enas", "darts"):
        found.note("spec.algorithm", f"{name}: its settings and search space are checked by its service on "
                                     "the cluster, not offline")
    return found
