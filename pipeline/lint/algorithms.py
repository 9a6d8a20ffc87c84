"""What each suggestion service checks when it starts (`ValidateAlgorithmSettings`)
and what makes its first suggestion fail: `pipeline.katib.algorithms`' table
applied to one Experiment, with a field path for every finding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.errors import UserError
from pipeline.katib import algorithms as rules, hyperband as katib_hyperband
from pipeline.katib.algorithms import go_atoi, py_float
from pipeline.katib.experiment import Param
from pipeline.lint.problems import Findings, as_dict, as_int, as_list, settings_of

SETTINGS = "spec.algorithm.algorithmSettings"


def _params(exp: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, as_dict(p)) for i, p in enumerate(as_list(as_dict(exp.get("spec")).get("parameters")))]


def _space(param: dict[str, Any]) -> dict[str, Any]:
    return as_dict(param.get("feasibleSpace"))


def _settings(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    """Every setting against the service's table: unknown names, unparsable or out-of-range values."""
    service = rules.ALGORITHMS[algorithm]
    known = list(service.settings)
    for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm")):
        rule = service.settings.get(name)
        if rule is None:
            if name in service.ignored:
                continue
            if service.unknown_rejected:
                found.error(
                    f"{SETTINGS}[{i}].name",
                    f"unknown setting {name!r} for algorithm {algorithm} (known: {', '.join(known) or 'none'})",
                )
            else:
                found.warning(
                    f"{SETTINGS}[{i}].name",
                    f"unknown setting {name!r} for algorithm {algorithm}: "
                    f"Katib's {service.backend} service ignores it "
                    f"(known: {', '.join(known) or 'none'})",
                )
            continue
        problem = rule.check(name, value, algorithm)
        if problem:
            found.error(f"{SETTINGS}[{i}].value", problem)


def _ignored_distributions(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    service = rules.ALGORITHMS[algorithm]
    for i, param in _params(exp):
        space = _space(param)
        if param.get("parameterType") in ("int", "double") and space.get("distribution") not in (None, "uniform"):
            found.note(
                f"spec.parameters[{i}].feasibleSpace.distribution",
                f"{space.get('distribution')!r} is ignored: Katib's {service.backend} service ({algorithm}) "
                "samples uniformly between min and max",
            )


# --- per service: what the search space must satisfy ----------------------------------------------


def _hyperopt(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    for i, param in _params(exp):
        space = _space(param)
        if param.get("parameterType") in ("int", "double") and space.get("distribution") in ("logUniform", "logNormal"):
            low = py_float(space.get("min"))
            if low is not None and low <= 0:
                found.error(
                    f"spec.parameters[{i}].feasibleSpace.min",
                    f"{space.get('min')}: hyperopt takes log(min) for a {space['distribution']} "
                    "distribution, so min must be > 0",
                )


def _optuna(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    spec = as_dict(exp["spec"])
    for i, param in _params(exp):
        space, ptype = _space(param), param.get("parameterType")
        dist = space.get("distribution")
        if ptype in ("int", "double") and dist in ("normal", "logNormal"):
            found.fails_later(
                f"spec.parameters[{i}].feasibleSpace.distribution",
                f"{dist!r}: Katib's Optuna service ({algorithm}) supports only uniform and "
                "logUniform; at v0.19 it leaves this parameter out of its search space, so its "
                "suggestions lack it and Katib creates no trial (later Katib versions reject "
                "it at admission)",
            )
        elif ptype in ("int", "double") and dist == "logUniform":
            low = py_float(space.get("min"))
            floor = 1 if ptype == "int" else 1e-10
            if low is not None and low < floor:
                found.note(
                    f"spec.parameters[{i}].feasibleSpace.min",
                    f"{space.get('min')}: Katib's Optuna service raises a logUniform min to {floor}",
                )
    if algorithm != "grid":
        return
    try:
        params = [Param.from_spec(p, f"spec.parameters[{i}]") for i, p in _params(exp)]
        max_trials = as_int(spec.get("maxTrialCount"))
        problem = rules.grid_budget_problem(params, max_trials) if max_trials is not None else None
        rules.grid_points(params)
    except UserError:
        return  # a malformed parameter: the webhook rules report it
    except ValueError as exc:
        found.error("spec.parameters", f"grid: {exc}")
        return
    if problem:
        found.error("spec.maxTrialCount", problem)


def _skopt(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    for i, param in _params(exp):
        space, ptype = _space(param), param.get("parameterType")
        if ptype not in ("int", "double"):
            continue
        path = f"spec.parameters[{i}].feasibleSpace"
        low, high = py_float(space.get("min")), py_float(space.get("max"))
        if low is not None and high is not None and low >= high:
            found.error(
                f"{path}.min", f"scikit-optimize needs min < max, found {space.get('min')} >= {space.get('max')}"
            )
        if ptype == "double":
            if low is not None and low <= 0:
                found.error(
                    f"{path}.min",
                    f"{space.get('min')}: Katib's skopt service samples every double log-uniformly, so min must be > 0",
                )
            if space.get("distribution") != "logUniform":
                found.note(
                    f"{path}.distribution",
                    f"{space.get('distribution')!r} is ignored: Katib's skopt "
                    "service samples every double log-uniformly",
                )
        elif space.get("distribution") not in (None, "uniform"):
            found.note(
                f"{path}.distribution",
                f"{space.get('distribution')!r} is ignored: Katib's skopt service samples ints uniformly",
            )


def _goptuna(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    params = _params(exp)
    numeric = sum(p.get("parameterType") in ("int", "double") for _, p in params)
    if algorithm == "cmaes" and numeric < rules.CMAES_MIN_NUMERIC_PARAMETERS:
        found.error(
            "spec.parameters",
            "CMA-ES only supports two or more dimensional continuous search space (int or double parameters)",
        )
    names: set[Any] = set()
    for i, param in params:
        if param.get("name") in names:
            found.error(f"spec.parameters[{i}].name", f"duplicated parameter name: {param.get('name')}")
        names.add(param.get("name"))
        space = _space(param)
        if param.get("parameterType") == "int":
            for key in ("min", "max", "step"):
                if space.get(key) and go_atoi(space[key]) is None:
                    found.error(
                        f"spec.parameters[{i}].feasibleSpace.{key}",
                        f"{space[key]!r}: goptuna parses int bounds with strconv.Atoi",
                    )
    _ignored_distributions(exp, algorithm, found)


def _hyperband(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    spec = as_dict(exp["spec"])
    settings = {name: (i, value) for i, name, value in settings_of(spec.get("algorithm"))}
    if any(name not in settings for name in rules.HYPERBAND_REQUIRED):
        found.error(SETTINGS, "r_l and resource_name must be set for hyperband")
        return
    plan = rules.hyperband_plan({name: str(value) for name, (_, value) in settings.items()})
    if plan is None:
        return  # r_l or eta rejected above
    parallel = as_int(spec.get("parallelTrialCount"))
    if parallel is not None and parallel < plan.min_parallel:
        found.error(
            "spec.parallelTrialCount",
            f"{parallel}: hyperband with r_l={settings['r_l'][1]}, "
            f"eta={plan.eta} needs parallelTrialCount >= {plan.min_parallel}",
        )
    k, resource = settings["resource_name"]
    if resource not in {p.get("name") for _, p in _params(exp)}:
        found.error(f"{SETTINGS}[{k}].value", f"resource_name {resource!r} must be one of spec.parameters")
    _ignored_distributions(exp, algorithm, found)
    if parallel is not None and parallel >= plan.min_parallel:
        _hyperband_stall(exp, plan, parallel, found)


def _hyperband_stall(exp: dict[str, Any], plan: rules.HyperbandPlan, parallel: int, found: Findings) -> None:
    """Katib v0.19's hyperband stops for good after its first rung unless maxTrialCount leaves
    exactly one trial to promote (katib.hyperband.katib_run simulates controller and service)."""
    max_trials = as_int(as_dict(exp["spec"]).get("maxTrialCount"))
    run = katib_hyperband.katib_run(plan.r_l, plan.eta, parallel, max_trials)
    if not run.stalled:
        return
    works = [
        m for m in range(1, 4 * parallel + 2) if not katib_hyperband.katib_run(plan.r_l, plan.eta, parallel, m).stalled
    ]
    longest = max(works, key=lambda m: len(katib_hyperband.katib_run(plan.r_l, plan.eta, parallel, m).resources))
    resources = katib_hyperband.katib_run(plan.r_l, plan.eta, parallel, longest).resources
    found.warning(
        "spec.algorithm",
        (
            f"Katib v0.19's hyperband stalls after {len(run.resources)} trial(s): {run.reason}, so its controller "
            f"retries forever and the Experiment stays Running (known Katib bugs {katib_hyperband.ISSUE_LINKS}). "
            f"With parallelTrialCount {parallel} the longest run that ends is maxTrialCount {longest}: "
            f"{len(resources)} trials at {plan.resource_name} {', '.join(map(str, resources))}, then "
            "ExperimentMaxTrialsReached"
        ),
    )


def _asha(exp: dict[str, Any], algorithm: str, found: Findings) -> None:
    """asha's rules across settings and search space (rules.asha_problems, which the service's
    ValidateAlgorithmSettings applies too); single-value problems were reported by _settings."""
    settings = {name: (i, value) for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm"))}
    texts = {name: str(value) for name, (_, value) in settings.items()}
    service = rules.ALGORITHMS[algorithm]
    if any(
        name not in service.ignored
        and (name not in service.settings or service.settings[name].check(name, text, algorithm))
        for name, text in texts.items()
    ):
        return
    try:
        params = [Param.from_spec(p, f"spec.parameters[{i}]") for i, p in _params(exp)]
    except (UserError, KeyError):
        return  # a malformed parameter: the webhook rules report it
    for name, message in rules.asha_problems(texts, params):
        path = f"{SETTINGS}[{settings[name][0]}].value" if name in settings else SETTINGS
        found.error(path, message)


PBT_REQUIRED = ("suggestion_trial_dir", "n_population", "truncation_threshold")


def _pbt(exp: dict[str, Any], found: Findings) -> None:
    """Katib v0.19's pbt service's ValidateAlgorithmSettings (`pkg/suggestion/v1beta1/pbt/service.py`)."""
    settings = {name: (i, value) for i, name, value in settings_of(as_dict(exp["spec"]).get("algorithm"))}
    missing = [k for k in PBT_REQUIRED if k not in settings]
    if missing:
        found.error(SETTINGS, f"pbt: required settings missing: {', '.join(missing)}")
        return
    i, value = settings["n_population"]
    try:
        if int(str(value)) < 5:
            found.error(f"{SETTINGS}[{i}].value", f"pbt: n_population {value} should be >= 5")
    except ValueError:
        found.error(f"{SETTINGS}[{i}].value", f"pbt: n_population {value!r} is not an integer")
    i, value = settings["truncation_threshold"]
    threshold = py_float(value)
    if threshold is None or not 0 <= threshold <= 1:
        found.error(f"{SETTINGS}[{i}].value", f"pbt: truncation_threshold {value!r} should be between 0 and 1")
    if "resample_probability" in settings:
        i, _ = settings["resample_probability"]
        found.error(
            f"{SETTINGS}[{i}].name",
            "pbt: Katib v0.19's service compares resample_probability, a "
            "string, with numbers and raises, so the Experiment fails at its "
            "first suggestion; leave it out (perturb by 0.8 / 1.2)",
        )
    found.note(
        "spec.algorithm",
        "pbt: the local dry-run cannot run it (its trials share checkpoints); the settings above are Katib's checks",
    )


SPACE_RULES: dict[str, Callable[[dict[str, Any], str, Findings], None]] = {
    "hyperopt": _hyperopt,
    "optuna": _optuna,
    "skopt": _skopt,
    "goptuna": _goptuna,
    "hyperband": _hyperband,
    rules.EXTENSION_BACKEND: _asha,
}


def check_algorithm_settings(exp: dict[str, Any]) -> Findings:
    found = Findings()
    name = str(as_dict(as_dict(exp.get("spec")).get("algorithm")).get("algorithmName") or "")
    service = rules.ALGORITHMS.get(name)
    if service:
        _settings(exp, name, found)
        SPACE_RULES[service.backend](exp, name, found)
    elif name == "pbt":
        _pbt(exp, found)
    elif name in rules.UNMODELLED:
        found.note(
            "spec.algorithm",
            f"{name}: its settings and search space are checked by its service on the cluster, not offline",
        )
    return found
