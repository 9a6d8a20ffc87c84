"""The linter: what `kubectl apply` and Katib's suggestion services would say
about an Experiment, offline, and the one `load` every command uses.

The spec is first filled with Katib's defaults (the validating webhook sees the
defaulted object), then checked: field types (Katib's swagger.json), the
webhook's admission rules, the algorithm's own settings, and, stricter than
Katib, mistakes it lets through (reported as warnings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment, load_experiment, parse_experiment, with_defaults
from pipeline.lint.algorithms import check_algorithm_settings
from pipeline.lint.fields import check_katib_fields
from pipeline.lint.problems import ERROR, NOTE, WARNING, Findings, Problem
from pipeline.lint.trial import check_our_trial
from pipeline.lint.webhook import ALL_CHECKS

__all__ = ["Problem", "lint_experiment", "load", "validate", "format_problem"]


def lint_experiment(exp: dict[str, Any], source: str = "<experiment>") -> list[Problem]:
    """Every problem in one parsed Experiment, errors first. `source` names it in messages."""
    found = Findings()
    found.extend(check_katib_fields(exp))
    defaulted = with_defaults(exp)
    for check in ALL_CHECKS:
        found.extend(check(defaulted))
    found.extend(check_algorithm_settings(defaulted))
    if not any(p.severity == ERROR for p in found):
        found.extend(check_our_trial(defaulted))
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    return sorted(dict.fromkeys(found), key=lambda p: order[p.severity])


def format_problem(source: str, problem: Problem) -> str:
    where = f"{source}: {problem.path}" if problem.path else source
    return f"{where}: {problem.severity}: {problem.message}"


def validate(exp: dict[str, Any], source: str, strict: bool = False) -> Experiment:
    """The typed, defaulted Experiment; UserError with the problem lines if Katib would reject it
    (or, with `strict`, on warnings too)."""
    failing = {ERROR, WARNING} if strict else {ERROR}
    bad = [format_problem(source, p) for p in lint_experiment(exp, source) if p.severity in failing]
    if bad:
        raise UserError("\n".join(bad))
    return Experiment(exp, source)


def load(source: str | Path | dict[str, Any], strict: bool = False) -> Experiment:
    """Parse, default and validate one Experiment: a YAML file, YAML/JSON text, or a dict.
    Every command goes through here, so an Experiment Katib rejects never runs anywhere."""
    if isinstance(source, dict):
        exp, label = source, (source.get("metadata") or {}).get("name", "<experiment>")
    elif isinstance(source, str) and ("\n" in source or source.lstrip().startswith(("apiVersion", "kind", "{"))):
        label = "<experiment text>"
        exp = parse_experiment(source, source=label)
    else:
        label = str(source)
        exp = load_experiment(source)
    return validate(exp, label, strict)
