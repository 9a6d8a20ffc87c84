"""`katib-digits pipeline compile|run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.errors import UserError
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS
from pipeline.workflow.definition import (
    DEFAULT_EXPERIMENT,
    DEFAULT_IMAGE,
    PIPELINE_NAME,
    Budget,
    compile_components,
    compile_pipeline,
    experiment_argument,
    pipeline_arguments,
)
from pipeline.workflow.local_run import LOCAL_BUDGET, run_local
from pipeline.workflow.server_run import submit
from pipeline.workflow.steps import DATA_MOUNT, DATA_PVC, in_project

LOCAL_DATA = "data/sample"  # the embedded sample: `pipeline run --local`'s default --data
# `pipeline run --local --full`: the whole job at full scale. Every local shrinking default (LOCAL_BUDGET) is
# replaced by the Experiment's own (0: its maxTrialCount, parallelTrialCount, all rows, the template's
# epochs) and by the retrain's own defaults, the ones a server run uses.
FULL_EXPERIMENT = "experiments/asha-full.yaml"
FULL_BUDGET = Budget(
    max_trial_count=0,
    parallel_trial_count=0,
    trial_max_rows=0,
    trial_epochs=0,
    retrain_epochs=RETRAIN_EPOCHS,
    retrain_ensemble=RETRAIN_ENSEMBLE,
)


@click.group("pipeline")
def pipeline_group():
    """Compile the KFP pipeline or run it (locally or on a KFP server)."""


image_pull_secret_option = click.option(
    "--image-pull-secret",
    "image_pull_secrets",
    multiple=True,
    metavar="NAME",
    help="A Secret the steps and the trial pods pull the image with (repeatable).",
)


@pipeline_group.command("compile")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("pipeline.yaml"),
    show_default=True,
    help="Where to write the IR YAML.",
)
@click.option(
    "--image",
    default=DEFAULT_IMAGE,
    show_default=True,
    help="The image every step runs in (built from our Dockerfile).",
)
@image_pull_secret_option
@click.option(
    "--components",
    "components_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write each step as a component YAML here, for kfp.components.load_component_from_file.",
)
def compile_command(output, image, image_pull_secrets, components_dir):
    """Write the pipeline's IR YAML, ready to upload to a KFP server."""
    compile_pipeline(output, image, tuple(image_pull_secrets))
    click.echo(f"{output}: pipeline {PIPELINE_NAME!r}, image {image}")
    if components_dir is not None:
        for path in compile_components(components_dir, image):
            click.echo(f"{path}: component {path.stem!r}")


def _budget_options(fn):
    options = [
        click.option(
            "--max-trials",
            "max_trial_count",
            type=click.IntRange(min=0),
            default=None,
            help="maxTrialCount override (0 = the Experiment's). Local default: 3.",
        ),
        click.option(
            "--parallel",
            "parallel_trial_count",
            type=click.IntRange(min=0),
            default=None,
            help="parallelTrialCount override (0 = the Experiment's). Local default: 1.",
        ),
        click.option(
            "--trial-max-rows",
            type=click.IntRange(min=0),
            default=None,
            help="Each trial uses only the first N rows (0 = all). Local default: 300.",
        ),
        click.option(
            "--trial-epochs",
            type=click.IntRange(min=0),
            default=None,
            help="Each trial trains N epochs (0 = the template's). Local default: 1.",
        ),
        click.option(
            "--retrain-epochs",
            type=click.IntRange(min=0),
            default=None,
            help=f"Retrain epochs (0 = the best trial's). Default {Budget.retrain_epochs}; local default: 3.",
        ),
        click.option(
            "--val-fraction",
            "retrain_val_fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            help="Hold-out for reporting the retrain (default 0: every row trains).",
        ),
        click.option(
            "--ensemble",
            "retrain_ensemble",
            type=click.IntRange(min=1),
            default=None,
            help=f"Retrain N models (seeds 0..N-1) and average their predictions. Default {Budget.retrain_ensemble}; "
            "local default: 1.",
        ),
        click.option(
            "--threshold",
            type=float,
            default=None,
            help="Submit only when the tuned objective reaches this (>= to maximize, <= to minimize; 0 = always).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _budget(defaults: Budget, **given) -> Budget:
    return Budget(**{k: (v if v is not None else getattr(defaults, k)) for k, v in given.items()})


def local_settings(full: bool, data_dir: str | None, experiment: str | None, **budget_flags) -> tuple[str, str, Budget]:
    """(data folder, Experiment, budget) of a `pipeline run --local`: the flags given, else the local
    defaults, or with `full` the full-scale preset (FULL_EXPERIMENT, FULL_BUDGET). `full` on the embedded
    sample is refused: tuning at full scale on a sample says nothing about the competition data."""
    data = data_dir or LOCAL_DATA
    if full and in_project(data).resolve() == in_project(LOCAL_DATA).resolve():
        raise UserError(
            f"pipeline run --full: --data is the embedded sample ({LOCAL_DATA}); pass --data with the "
            "competition's train.csv(.gz) and test.csv(.gz), e.g. --data ../shared/data/digit-recognizer"
        )
    defaults = (FULL_EXPERIMENT, FULL_BUDGET) if full else (DEFAULT_EXPERIMENT, LOCAL_BUDGET)
    return data, experiment or defaults[0], _budget(defaults[1], **budget_flags)


def _full_help() -> str:
    b = FULL_BUDGET
    return (
        "--local: the whole job at full scale. Sets --experiment "
        f"{FULL_EXPERIMENT} --max-trials {b.max_trial_count} --parallel {b.parallel_trial_count} "
        f"--trial-max-rows {b.trial_max_rows} --trial-epochs {b.trial_epochs} "
        f"--retrain-epochs {b.retrain_epochs} --ensemble {b.retrain_ensemble} (the Experiment's budget, "
        "all rows, the template's epochs, the retrain's defaults); a flag given still wins. Needs --data "
        "with the competition data. On a 2-core machine it takes hours. Refused with --host: a server run "
        "already uses these (pass --experiment there)."
    )


@pipeline_group.command("run")
@click.option("--local", "local_run", is_flag=True, help="Run here with kfp.local, tuning with Optuna.")
@click.option("--host", default=None, help="KFP server URL: submit a run there, tuning with Katib.")
@click.option(
    "--data",
    "data_dir",
    default=None,
    help="Folder with train.csv(.gz), test.csv(.gz) [and sample_submission.csv]. "
    f"Local default: {LOCAL_DATA} (refused with --full); on a server: a folder on the data volume "
    f"(default {DATA_MOUNT}).",
)
@click.option(
    "--experiment",
    default=None,
    help=f"Katib Experiment YAML (default {DEFAULT_EXPERIMENT}; with --full {FULL_EXPERIMENT}). A file "
    "here is sent with the run (as one-line JSON); --host with a path that is not a file here names a "
    "file in the image.",
)
@click.option("--full", is_flag=True, help=_full_help())
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/pipeline"),
    show_default=True,
    help="--local: where submission.csv, summary.json and the run's files go.",
)
@click.option("--namespace", default=None, help="--host: the KFP namespace (multi-user) and Katib's.")
@click.option(
    "--service-account",
    default=None,
    help="--host: run as this account instead of KFP's default runner. It also runs KFP's driver and "
    "launcher, so it needs their permissions besides Katib's (see docs/cluster.md).",
)
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="--host: the image every step runs in.")
@click.option("--trial-image", default=None, help="--host: the image Katib's trial pods run (default: --image).")
@click.option(
    "--data-pvc",
    default=None,
    help=f"--host: the PersistentVolumeClaim with the data, mounted at {DATA_MOUNT} in prepare and in "
    f"every trial (default {DATA_PVC}).",
)
@image_pull_secret_option
@click.option(
    "--token",
    envvar="KFP_TOKEN",
    default=None,
    help="--host: a bearer token for a server behind Kubeflow's login (or $KFP_TOKEN).",
)
@click.option(
    "--cookies",
    envvar="KFP_COOKIES",
    default=None,
    help="--host: cookies for the server, e.g. 'authservice_session=...' (or $KFP_COOKIES).",
)
@click.option(
    "--ui-host",
    default=None,
    help="--host: the UI's address for the run link, when it is not the API's (default: derived).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.IntRange(min=1),
    default=6 * 3600,
    show_default=True,
    help="--host: seconds to wait for the Katib Experiment.",
)
@click.option(
    "--in-containers",
    is_flag=True,
    help="--local: run each step in a container of --image (kfp.local's DockerRunner; Docker, or podman's "
    "Docker API through $DOCKER_HOST), as a cluster runs it.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="--local: start the tune over. A run keeps its tune in OUT/kfp-local/tune-state/, and the same "
    "command run again (same Experiment, budget and data) resumes it there, finished trials kept, or reuses "
    "it when it had ended; --fresh deletes the kept tunes first.",
)
@_budget_options
def run_command(
    local_run,
    host,
    data_dir,
    experiment,
    out,
    namespace,
    service_account,
    image,
    trial_image,
    data_pvc,
    image_pull_secrets,
    token,
    cookies,
    ui_host,
    timeout_s,
    in_containers,
    full,
    fresh,
    **budget_flags,
):
    """Run the whole pipeline: --local (kfp.local + Optuna) or --host URL (KFP server + Katib).

    On a server the steps read the data from the volume --data-pvc (mounted at /data) and the trials of
    the Experiment the tune step creates read the same volume; the run stops its Experiment when it ends
    or is terminated.

    --local's defaults are a smoke run on the embedded sample (minutes). --local --full --data DIR runs
    the whole job at full scale: experiments/asha-full.yaml with its own budget, then the full retrain
    (hours on a 2-core machine). An interrupted --local run resumes its tune when run again (--fresh:
    start over).
    """
    if local_run == bool(host):
        raise UserError("pipeline run: pass exactly one of --local or --host URL")
    if full and host:
        raise UserError(
            "pipeline run: --full is for --local; a server run already uses the Experiment's budget and "
            f"the retrain's defaults (for the full-scale search there: --experiment {FULL_EXPERIMENT})"
        )
    if local_run:
        data, experiment, budget = local_settings(full, data_dir, experiment, **budget_flags)
        if full:
            epochs = f"{budget.retrain_epochs} epochs" if budget.retrain_epochs else "the best trial's epochs"
            click.echo(
                f"pipeline run --full: {experiment} on {data}, then a retrain of {budget.retrain_ensemble} "
                f"model(s), {epochs}: hours on a 2-core machine"
            )
        summary = run_local(data, experiment, out, budget, image=image if in_containers else None, fresh=fresh)
        click.echo(_describe_local(summary))
        return
    arguments = pipeline_arguments(
        data_dir or DATA_MOUNT,
        experiment_argument(experiment or DEFAULT_EXPERIMENT),
        "katib",
        _budget(Budget(), **budget_flags),
        namespace or "",
        timeout_s,
        data_pvc=data_pvc,
        trial_image=trial_image or image,
    )
    click.echo(
        submit(
            host,
            arguments,
            image,
            namespace,
            service_account,
            image_pull_secrets=tuple(image_pull_secrets),
            token=token,
            cookies=cookies,
            ui_host=ui_host,
        )
    )


def _describe_local(summary: dict[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in summary["assignments"].items())
    lines = [f"best trial {summary['best_trial']}: {summary['objective_metric']}={summary['objective']:.4f} ({params})"]
    if summary["submitted"]:
        metrics = " ".join(f"{k}={v:.4f}" for k, v in summary.get("retrain", {}).get("metrics", {}).items())
        lines.append(f"retrained: {metrics}")
        lines.append(f"submission: {summary['submission']}")
    else:
        lines.append(f"objective did not reach --threshold {summary['threshold']}: no submission")
    lines.append(f"summary: {summary['summary']}")
    return "\n".join(lines)
