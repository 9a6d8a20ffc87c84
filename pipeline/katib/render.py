"""Turn sampled values into the trial command, the way Katib does.

Katib's suggestion services hand values to the controller as strings, and the
controller does a plain string replace of `${trialParameters.NAME}` in the
trial template's JSON. The metrics-collector webhook then joins the primary
container's command and args with spaces and runs them under `sh -c`, so the
arguments are word-split again. This module reproduces those three steps.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.algorithms import render_style
from pipeline.katib.experiment import Experiment

PYTHON_STYLE = "python"  # str(value): 0.001, 1e-05, 13 (hyperopt, skopt, Optuna services)
GOPTUNA_STYLE = "goptuna"  # strconv.FormatFloat(v, 'f', -1, 64): never an exponent (cmaes, sobol)

# Katib's TrialTemplateMetaReplaceFormatRegex and TrialTemplateMetaParseFormatRegex (unanchored, Go RE2).
_META_REF = re.compile(r"\$\{trialSpec\.(.+?)\}")
_META_INDEX = re.compile(r"(.+)\[(.+)]")


def render_value(value: Any, style: str = PYTHON_STYLE) -> str:
    """A sampled value as the string Katib substitutes into the template."""
    if style not in (PYTHON_STYLE, GOPTUNA_STYLE):
        raise ValueError(f"unknown render style {style!r}; expected {PYTHON_STYLE!r} or {GOPTUNA_STYLE!r}")
    if isinstance(value, str):
        return value  # categorical / discrete list entries appear verbatim
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars from hyperopt / skopt
        value = value.item()
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if style == PYTHON_STYLE:
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # Shortest round-tripping digits (what Go's -1 precision means), positional.
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def placeholder(name: str) -> str:
    """`${trialParameters.NAME}`: where the trial template takes the parameter's value."""
    return "${trialParameters." + name + "}"


def substitute(obj: Any, values: dict[str, str]) -> Any:
    """Plain string replace of `${trialParameters.NAME}` over `obj`'s JSON text.

    Like Katib, the value is not escaped: a categorical value containing a
    double quote breaks the template, and we say so.
    """
    text = json.dumps(obj)
    for name, value in values.items():
        text = text.replace(placeholder(name), value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"trial template is not valid JSON after substituting the parameter values ({exc}); "
            "a value containing '\"' or '\\' breaks it on Katib too"
        ) from None


def parameter_values(
    exp: Experiment, assignments: dict[str, Any], style: str, trial_name: str = "", namespace: str | None = None
) -> dict[str, str]:
    """trialParameter name -> rendered string, following each `reference` as the manifest
    generator's applyParameters does: a reference containing `${trialSpec.KEY}` anywhere is
    metadata (the text around it is dropped: `x-${trialSpec.Name}` is the trial's name),
    anything else must be an assigned parameter; a Labels/Annotations key that the trial
    template lacks is an error, and so is an assigned parameter no trialParameter uses
    (Katib then creates no trial at all). `namespace` is the one the Experiment runs in
    (default: its metadata.namespace, else "default")."""
    template = exp.trial_template
    trial_spec = template.get("trialSpec") or {}
    tmeta = trial_spec.get("metadata") or {}
    values: dict[str, str] = {}
    used = 0
    index = ""  # Katib keeps the last [index] across trialParameters
    for tp in template.get("trialParameters") or []:
        ref = tp.get("reference", tp["name"])
        m = _META_REF.search(ref)
        if m is None:
            if ref not in assignments:
                raise UserError(
                    f"spec.trialTemplate.trialParameters: {tp['name']!r} references {ref!r}, which is "
                    "neither an assigned parameter nor a ${trialSpec.*} key: Katib's manifest "
                    "generator fails every trial on it"
                )
            values[tp["name"]] = render_value(assignments[ref], style)
            used += 1
            continue
        key = m.group(1)
        sub = _META_INDEX.search(key)
        if sub:
            key, index = sub.group(1), sub.group(2)
        if key == "Name":
            values[tp["name"]] = trial_name
        elif key == "Namespace":
            values[tp["name"]] = namespace or exp.namespace or "default"
        elif key == "Kind":
            values[tp["name"]] = str(trial_spec.get("kind", ""))
        elif key == "APIVersion":
            values[tp["name"]] = str(trial_spec.get("apiVersion", ""))
        elif key in ("Labels", "Annotations"):
            found = tmeta.get(key.lower()) or {}
            if index not in found:
                raise UserError(
                    f"spec.trialTemplate.trialParameters: {tp['name']!r} references {ref!r}, but the "
                    f"trial template has no {key[:-1].lower()} {index!r}: Katib fails every trial "
                    f'("failed to fetch {key[:-1]}")'
                )
            values[tp["name"]] = str(found[index])
        else:
            raise UserError(
                f"spec.trialTemplate.trialParameters: {tp['name']!r}: illegal reference of trial "
                f"metadata {ref!r} (Name, Namespace, Kind, APIVersion, Labels[k], Annotations[k])"
            )
    if len(assignments) != used:
        missing = sorted(
            set(map(str, assignments)) - {str(tp.get("reference")) for tp in template.get("trialParameters") or []}
        )
        raise UserError(
            f"spec.parameters: {', '.join(missing) or 'a parameter'} is assigned but no trialParameter "
            f"references it ({len(assignments)} assignments, {used} trialParameters use one): Katib's "
            "manifest generator refuses every trial"
        )
    return values


def render_trial_spec(
    exp: Experiment,
    assignments: dict[str, Any],
    style: str | None = None,
    trial_name: str = "",
    namespace: str | None = None,
) -> dict[str, Any]:
    """The trial's Job manifest with every placeholder replaced (values written as the
    algorithm's service writes them unless `style` says otherwise)."""
    values = parameter_values(exp, assignments, style or render_style(exp.algorithm_name), trial_name, namespace)
    return substitute(exp.trial_spec, values)


def katib_shell_line(words: list[str]) -> tuple[list[str], str]:
    """The pod webhook's wrapping of the primary container (StdOut and File collectors):
    (the shell, the words it joins with spaces, no quoting). A leading `sh -c` / `bash -c`
    is kept as the shell, anything else runs under `sh -c`."""
    shell = ["sh", "-c"]
    if len(words) >= 2 and words[0] in ("sh", "bash") and words[1] == "-c":
        shell, words = words[:2], words[2:]
    return shell, " ".join(words)


def shell_words(words: list[str]) -> list[str]:
    """`words` joined by spaces and split again as `sh -c` would (no quoting by Katib)."""
    _, joined = katib_shell_line(words)
    try:
        return shlex.split(joined)
    except ValueError as exc:
        raise UserError(f"trial command does not survive Katib's `sh -c` wrapping ({exc}): {joined!r}") from None


def trial_argv(
    exp: Experiment,
    assignments: dict[str, Any],
    style: str | None = None,
    trial_name: str = "",
    map_word: Callable[[str], str] | None = None,
    namespace: str | None = None,
) -> list[str]:
    """The argv one trial runs: primary container command + args, substituted, joined and
    re-split like Katib's collector wrapper. A leading `python` or `python3` becomes this
    interpreter (sys.executable). `map_word` rewrites each word first (the local run maps
    container paths to local folders there)."""
    container = exp.primary_container(render_trial_spec(exp, assignments, style, trial_name, namespace))
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    if not words:
        raise UserError(
            "spec.trialTemplate: the primary container has no command/args; the local dry-run "
            "cannot run an image's entrypoint"
        )
    argv = shell_words([map_word(w) for w in words] if map_word else words)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv
