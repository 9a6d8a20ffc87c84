"""`katib-digits lint FILE...`: what `kubectl apply` and Katib's suggestion
services would say about an Experiment, offline.

The spec is first filled with Katib's defaults (the validating webhook sees the
defaulted object), then checked: field types (Katib's swagger.json), the
webhook's admission rules, the algorithm's own settings, and, stricter than
Katib, mistakes it lets through. Errors exit 1; warnings and notes do not
(unless --strict).
"""
from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from pipeline.errors import UserError
from pipeline.lint_algorithms import check_algorithm_settings
from pipeline.lint_rules import ALL_CHECKS
from pipeline.lint_schema import check_katib_fields
from pipeline.lint_types import ERROR, NOTE, WARNING, Findings, Problem, as_dict, as_list
from pipeline.spec import load_experiment, with_defaults

__all__ = ["Problem", "lint_experiment", "check_experiment", "lint_command"]

# What `python -m trial` prints (trial/cli.py); val_* only with a validation split.
TRIAL_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


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


def check_experiment(path: str | Path, strict: bool = False) -> dict[str, Any]:
    """Load and lint one file; UserError with the error lines if Katib would reject it
    (or, with `strict`, on warnings too). Returns the defaulted spec."""
    exp = load_experiment(path)
    failing = {ERROR, WARNING} if strict else {ERROR}
    bad = [p for p in lint_experiment(exp, str(path)) if p.severity in failing]
    if bad:
        lines = [format_problem(str(path), p) for p in bad]
        raise UserError("\n".join(lines) if len(lines) > 1 else lines[0])
    return with_defaults(exp)


def format_problem(source: str, problem: Problem) -> str:
    where = f"{source}: {problem.path}" if problem.path else source
    return f"{where}: {problem.severity}: {problem.message}"


# --- stricter than Katib: our own trial ----------------------------------------------------------

def _sample_value(param: dict[str, Any]) -> Any:
    space = as_dict(param.get("feasibleSpace"))
    if param.get("parameterType") in ("categorical", "discrete"):
        values = as_list(space.get("list"))
        return values[0] if values else ""
    low = float(space.get("min"))
    high = float(space.get("max"))
    middle = (low * high) ** 0.5 if space.get("distribution") == "logUniform" and low > 0 else (low + high) / 2
    return int(round(middle)) if param.get("parameterType") == "int" else middle


def check_our_trial(exp: dict[str, Any]) -> Findings:
    """When the primary container runs `python -m trial`, render it with sample values
    and parse it with the trial's own parser; check the metrics it can print."""
    from pipeline.render import style_for_algorithm, trial_argv

    found = Findings()
    spec = as_dict(exp.get("spec"))
    try:
        samples = {p["name"]: _sample_value(p) for p in as_list(spec.get("parameters"))}
        algorithm = as_dict(spec.get("algorithm")).get("algorithmName", "")
        argv = trial_argv(exp, samples, style_for_algorithm(algorithm), trial_name="lint-trial")
    except (UserError, KeyError, TypeError, ValueError, AttributeError):
        return found  # not a Job template we can render; Katib's rules above cover it
    if "-m" not in argv or argv.index("-m") + 1 >= len(argv) or argv[argv.index("-m") + 1] != "trial":
        return found
    args = argv[argv.index("-m") + 2:]
    where = "spec.trialTemplate.trialSpec"
    from trial.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = build_parser().parse_args(args)
    except SystemExit:
        said = stderr.getvalue().strip().splitlines()
        found.warning(where, f"the trial rejects its arguments: {said[-1] if said else 'usage error'} "
                             f"(rendered with sample values: python -m trial {shlex.join(args)})")
        return found
    metrics = TRIAL_METRICS if parsed.val_fraction > 0 else TRIAL_METRICS[:2]
    objective = as_dict(spec.get("objective"))
    wanted = [objective.get("objectiveMetricName"), *as_list(objective.get("additionalMetricNames"))]
    for name in wanted:
        if isinstance(name, str) and name not in metrics:
            found.warning("spec.objective", f"metric {name!r} is never printed by `python -m trial` "
                                            f"(it prints {', '.join(metrics)})")
    return found


# --- the command ------------------------------------------------------------------------------------

def _parse_mounts(mounts: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in mounts:
        target, sep, local = item.partition("=")
        if not sep or not target.startswith("/") or not local:
            raise UserError(f"--mount {item!r}: expected /PATH/IN/POD=LOCAL_DIR, e.g. --mount /data=data/sample")
        out[target] = local
    return out


@click.command("lint")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one line per problem; json: one object for machines.")
@click.option("--show-defaults", is_flag=True, help="Print each spec with Katib's defaults filled in.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too, not only on errors.")
@click.option("--run", "run_smoke", is_flag=True,
              help="After a clean lint, run one trial locally and check the objective metric is collected.")
@click.option("--mount", "mounts", multiple=True, metavar="/PATH=DIR",
              help="With --run: the local folder standing in for a volume mounted at /PATH (repeatable).")
@click.option("--trial-arg", "trial_args", multiple=True, metavar="ARG",
              help="With --run: extra argument for the trial, e.g. --trial-arg=--max-rows=500 (repeatable).")
@click.pass_context
def lint_command(ctx: click.Context, files: tuple[str, ...], fmt: str, show_defaults: bool, strict: bool,
                 run_smoke: bool, mounts: tuple[str, ...], trial_args: tuple[str, ...]) -> None:
    """Check Katib Experiment YAMLs offline: Katib's defaults, its admission
    webhook's rules, field types, each algorithm's settings, and (stricter than
    Katib) mistakes it accepts silently.

    Prints `FILE: spec.path: severity: message` per problem. Exit 0 when no file
    has errors, 1 when one has, 2 when a file cannot be read as an Experiment.
    """
    mount_map = _parse_mounts(mounts)
    failing = {ERROR, WARNING} if strict else {ERROR}
    reports: list[dict[str, Any]] = []
    unreadable = failed = False
    for name in files:
        try:
            exp = load_experiment(name)
        except UserError as exc:
            unreadable = True
            reports.append({"file": name, "error": str(exc)})
            if fmt == "text":
                click.echo(f"katib-digits: error: {exc}", err=True)
            continue
        problems = lint_experiment(exp, name)
        bad = any(p.severity in failing for p in problems)
        failed |= bad
        report: dict[str, Any] = {"file": name, "ok": not bad, "problems": [p.to_dict() for p in problems]}
        if show_defaults:
            report["spec"] = with_defaults(exp)
        reports.append(report)
        if fmt == "text":
            for problem in problems:
                click.echo(format_problem(name, problem), err=show_defaults)
            if show_defaults:
                click.echo(f"# {name}, with Katib's defaults\n---")
                click.echo(yaml.safe_dump(report["spec"], sort_keys=False, width=120), nl=False)
        if run_smoke and not bad:
            try:
                from pipeline.dryrun import smoke_check
            except ImportError as exc:
                raise UserError(f"--run needs the local dry-run (pipeline.dryrun): {exc}") from None
            smoke_check(name, mount_map, list(trial_args))
            if fmt == "text":
                click.echo(f"{name}: run: the objective metric was collected", err=show_defaults)
    if fmt == "json":
        counts = {s: sum(p["severity"] == s for r in reports for p in r.get("problems", []))
                  for s in (ERROR, WARNING, NOTE)}
        click.echo(json.dumps({"files": reports, **{f"{s}s": n for s, n in counts.items()}}, indent=2))
    elif not show_defaults:
        counts = [sum(p["severity"] == s for r in reports for p in r.get("problems", [])) for s in (ERROR, WARNING)]
        verdict = "invalid" if failed or unreadable else "ok"
        click.echo(f"lint: {len(files)} file(s), {counts[0]} error(s), {counts[1]} warning(s): {verdict}",
                   err=True)
    ctx.exit(2 if unreadable else 1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    lint_command(sys.argv[1:])
