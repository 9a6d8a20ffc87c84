"""`katib-digits lint FILE...`."""

from __future__ import annotations

import json
from typing import Any

import click

from pipeline.cli.options import mount_option, parse_mounts, trial_arg_option
from pipeline.errors import UserError
from pipeline.katib.experiment import dump_yaml, load_experiment, with_defaults
from pipeline.lint import format_problem, lint_experiment
from pipeline.lint.problems import ERROR, NOTE, WARNING


@click.command("lint")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per problem; json: one object for machines.",
)
@click.option("--show-defaults", is_flag=True, help="Print each spec with Katib's defaults filled in.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too, not only on errors.")
@click.option(
    "--run",
    "run_smoke",
    is_flag=True,
    help="After a clean lint, run one trial locally and check the objective metric is collected.",
)
@mount_option
@trial_arg_option
@click.pass_context
def lint_command(
    ctx: click.Context,
    files: tuple[str, ...],
    fmt: str,
    show_defaults: bool,
    strict: bool,
    run_smoke: bool,
    mounts: tuple[str, ...],
    trial_args: tuple[str, ...],
) -> None:
    """Check Katib Experiment YAMLs offline: Katib's defaults, its admission
    webhook's rules, field types, each algorithm's settings, and (stricter than
    Katib) mistakes it accepts silently.

    Prints `FILE: spec.path: severity: message` per problem. Exit 0 when no file
    has errors, 1 when one has, 2 when a file cannot be read as an Experiment.
    """
    mount_map = parse_mounts(mounts)
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
                click.echo(dump_yaml(report["spec"], sort_keys=False, width=120), nl=False)
        if run_smoke and not bad:
            from pipeline.local.smoke import smoke_check

            smoke_check(name, mount_map, list(trial_args))
            if fmt == "text":
                click.echo(f"{name}: run: the objective metric was collected", err=show_defaults)
    if fmt == "json":
        counts = {
            s: sum(p["severity"] == s for r in reports for p in r.get("problems", [])) for s in (ERROR, WARNING, NOTE)
        }
        click.echo(json.dumps({"files": reports, **{f"{s}s": n for s, n in counts.items()}}, indent=2))
    elif not show_defaults:
        n_errors, n_warnings = (
            sum(p["severity"] == s for r in reports for p in r.get("problems", [])) for s in (ERROR, WARNING)
        )
        n_unreadable = sum("error" in r for r in reports)
        verdict = "invalid" if failed or unreadable else "ok"
        unread = f"{n_unreadable} unreadable, " if n_unreadable else ""
        click.echo(
            f"lint: {len(files)} file(s), {unread}{n_errors} error(s), {n_warnings} warning(s): {verdict}", err=True
        )
    ctx.exit(2 if unreadable else 1 if failed else 0)
