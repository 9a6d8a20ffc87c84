"""`katib-digits tune EXPERIMENT.yaml`."""

from __future__ import annotations

import click

from pipeline.cli.options import mount_option, parse_mounts, trial_arg_option
from pipeline.katib.status import SUCCEEDED
from pipeline.local.controller import run_experiment
from pipeline.local.outputs import INTERRUPTED_ANNOTATION


@click.command("tune")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: runs/<experiment-name>/).",
)
@mount_option
@click.option("--storage", default=None, help="Optuna storage URL (default: SQLite in the output folder).")
@click.option("--max-trial-count", type=int, default=None, help="Override spec.maxTrialCount (smoke runs).")
@click.option("--parallel-trial-count", type=int, default=None, help="Override spec.parallelTrialCount.")
@trial_arg_option
@click.option("--no-progress", is_flag=True, help="No progress bar or notes on stderr.")
@click.option(
    "--no-report", is_flag=True, help="Skip report.html (plotly); experiment.json and trials.csv are written."
)
@click.pass_context
def tune_command(
    ctx, experiment, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args, no_progress, no_report
):
    """Run EXPERIMENT (a Katib v1beta1 Experiment YAML) locally with Optuna,
    with Katib's trial command, metrics collection, early stopping and end
    conditions. Re-running the same command resumes. A leading `python` or
    `python3` in the trial command runs this interpreter (sys.executable).

    Exit status: 0 Succeeded, 1 Failed, 2 bad input, 130/143 interrupted.
    """
    status = run_experiment(
        experiment,
        out_dir,
        parse_mounts(mounts),
        storage,
        max_trial_count,
        parallel_trial_count,
        trial_args,
        progress=not no_progress,
        report=not no_report,
    )
    cond = status["status"]["conditions"][-1]
    interrupted = int(status["metadata"]["annotations"].get(INTERRUPTED_ANNOTATION, 0))
    click.echo(f"{status['metadata']['name']}: {cond['type']} ({cond['reason']}): {cond['message']}", err=True)
    best = status["status"].get("currentOptimalTrial") or {}
    if best.get("bestTrialName"):
        click.echo(
            f"best trial {best['bestTrialName']}: "
            + " ".join(f"{a['name']}={a['value']}" for a in best["parameterAssignments"])
            + " | "
            + " ".join(f"{m['name']}={m['latest']}" for m in best["observation"]["metrics"]),
            err=True,
        )
    if interrupted:
        ctx.exit(128 + interrupted)
    ctx.exit(0 if cond["type"] == SUCCEEDED else 1)
