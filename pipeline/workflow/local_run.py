"""Run the pipeline here with kfp.local (tuning with Optuna): every step a subprocess, or a container of
the image through kfp.local's DockerRunner (with a container runner that reads a quick container's exit
code before removing it); the results gathered from kfp.local's folders into `out`.
"""

import contextlib
import io
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.workflow.definition import DEFAULT_IMAGE, Budget, build_pipeline, experiment_argument, pipeline_arguments
from pipeline.workflow.steps import ERROR_PREFIX, REPO, in_project

LOCAL_SAVED_MODEL = "models/digits"  # under a local run's --out: the export step's SavedModel, version 1
# Under the pipeline root (the one folder a step's container sees): the tune step's dry-runs, kept across
# runs so the same command resumes an interrupted tune (steps.kept_tune_dir).
TUNE_STATE = "tune-state"


# `pipeline run --local` on a 2-core laptop: 3 one-epoch trials on 300 rows, then a 3-epoch retrain
# on every labelled row. A user with the full data passes bigger flags.
LOCAL_TRIAL_EPOCHS = 1
LOCAL_BUDGET = Budget(
    max_trial_count=3,
    parallel_trial_count=1,
    trial_max_rows=300,
    trial_epochs=None,
    retrain_epochs=3,
    retrain_ensemble=1,
)


def local_budget(budget: Budget, experiment) -> Budget:
    """`budget` with the local default trial epochs resolved: LOCAL_TRIAL_EPOCHS, except where the
    Experiment's algorithm gives each trial its epochs (hyperband, asha: the one budget rule refuses
    to override them), which keep their own."""
    from pipeline.katib.budget import resource_override_refusal

    if budget.trial_epochs is not None:
        return budget
    if resource_override_refusal(experiment, f"--epochs={LOCAL_TRIAL_EPOCHS}", "the local default") is None:
        return replace(budget, trial_epochs=LOCAL_TRIAL_EPOCHS)
    print(
        f"pipeline: {experiment.algorithm_name} gives each trial its epochs: the local default "
        f"--trial-epochs {LOCAL_TRIAL_EPOCHS} is not applied",
        flush=True,
    )
    return replace(budget, trial_epochs=0)


class StepErrorTee(io.TextIOBase):
    """Passes writes through to `target`, remembering (in `error`) the message of the last
    `katib-digits: error:` line a step printed: the one line a failed local run reports."""

    def __init__(self, target):
        self.target = target
        self.error: str | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if ERROR_PREFIX in line:
                self.error = line.split(ERROR_PREFIX, 1)[1].strip()
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def _step_environment() -> Iterator[None]:
    """kfp.local runs each step as `python -c ...` in a subprocess: make sure it imports this project."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter in every step
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_container(client, image: str, command: list[str], volumes: dict[str, Any], **run_args) -> int:
    """kfp.local's DockerRunner body, without `auto_remove`: with auto_remove, podman's Docker API
    removes a quick container before its logs are read and then answers the status query with a 500
    (Docker answers 404, which kfp.local takes for success), so a step of a second failed the run and
    one that crashed fast could pass. Here the container is removed after its exit code is read."""
    image = image if ":" in image else f"{image}:latest"
    if not any(image in (i.tags + i.attrs.get("RepoDigests", [])) for i in client.images.list()):
        client.images.pull(image)
    run_args.pop("auto_remove", None)
    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes, **run_args
    )
    try:
        code = container.wait()["StatusCode"]
        print(container.logs(stdout=True, stderr=True).decode(errors="replace"), end="")
        return code
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def _containers_removed_after_exit() -> Iterator[None]:
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


def run_local(
    data_dir: str | Path,
    experiment_path: str | Path,
    out: str | Path,
    budget: Budget = LOCAL_BUDGET,
    image: str | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline with kfp.local (Optuna tuning); copy submission.csv, summary.json and the
    SavedModel (`out/models/digits/1/`) to `out`.

    The tune step keeps its dry-run in `out/kfp-local/tune-state/<experiment>-<key>/`, so running the same
    Experiment, budget and data into the same `out` again resumes it (a finished one is not rerun);
    `fresh` deletes the kept tunes first.

    image None: every step is a subprocess here. An image: every step runs in a container of it,
    `python3 -m kfp.dsl.executor_main` as KFP's launcher runs it on a cluster, through kfp.local's
    DockerRunner (any Docker API: Docker, or `podman system service`, via DOCKER_HOST); the data
    is staged into the pipeline root, the one folder the containers see.
    A step that fails on bad input raises UserError with the step's own one-line message.
    """
    from kfp import local

    from pipeline.workflow.steps import read_experiment, refuse_resource_overrides

    data_dir, experiment_path = in_project(data_dir).resolve(), in_project(experiment_path)
    # missing, not YAML, rejected by Katib or by the budget rule: one line before any step
    exp = read_experiment(str(experiment_path))
    budget = local_budget(budget, exp)
    assert budget.trial_epochs is not None  # local_budget resolves it
    refuse_resource_overrides(exp, budget.trial_max_rows, budget.trial_epochs)
    out = Path(out).resolve()
    pipeline_root = out / "kfp-local"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    for stale in ("submission.csv", "summary.json", "experiment.json"):  # never mistake an old result for this run's
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / LOCAL_SAVED_MODEL, ignore_errors=True)
    state = pipeline_root / TUNE_STATE
    if fresh and state.exists():
        try:
            shutil.rmtree(state)
        except OSError as exc:
            raise UserError(f"{state}: cannot delete the kept tunes ({exc.strerror}); delete it by hand") from None
        print(f"pipeline: --fresh: deleted the kept tunes in {state}", file=sys.stderr, flush=True)
    before = set(pipeline_root.iterdir())
    if image is None:
        # The step reads the file itself (same machine), so its messages name it.
        arguments = pipeline_arguments(
            str(data_dir), str(experiment_path), "optuna", budget, export_dir="", tune_state_dir=str(state)
        )
        runner = local.SubprocessRunner(use_venv=False)
    else:
        staged = pipeline_root / "input-data"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(data_dir, staged)
        pipeline_root.chmod(0o777)  # the image runs as UID 1000
        arguments = pipeline_arguments(
            str(staged),
            experiment_argument(str(experiment_path)),
            "optuna",
            budget,
            export_dir="",
            tune_state_dir=str(state),
        )
        runner = local.DockerRunner()
    local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True)
    tee = StepErrorTee(sys.stdout)
    started = time.perf_counter()
    containers = _containers_removed_after_exit() if image else contextlib.nullcontext()
    with _step_environment(), containers, warnings.catch_warnings(), contextlib.redirect_stdout(tee):
        # kfp.local warns that our image name lacks "python" and that display names/resources are
        # ignored locally: both expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            build_pipeline(image or DEFAULT_IMAGE, retries=False)(**arguments)
        except KeyboardInterrupt:
            if state.exists():  # the tune step had started: its dry-run keeps what it finished
                print(f"pipeline: interrupted; the same command resumes the tune kept in {state}", file=sys.stderr)
            raise
        except RuntimeError as exc:
            step = failed_step_name(str(exc))
            if tee.error:
                raise UserError(f"pipeline step {step}: {tee.error}") from None
            raise RuntimeError(f"pipeline step {step} failed (its log is above)") from None
    runs = sorted(
        (p for p in set(pipeline_root.iterdir()) - before if p.name not in ("input-data", TUNE_STATE)),
        key=lambda p: p.stat().st_mtime,
    )
    if not runs:
        raise RuntimeError(f"kfp.local wrote no run folder under {pipeline_root}")
    summary = collect_local_run(runs[-1], out, budget.threshold)
    summary.update(
        seconds=round(time.perf_counter() - started, 1),
        data_dir=str(data_dir),
        experiment_file=str(experiment_path),
        budget=asdict(budget),
        summary=str(out / "summary.json"),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def failed_step_name(message: str) -> str:
    """The step kfp.local's failure message names (`... Inner task failed: 'prepare'.`, colour codes
    and all); "?" when it names none."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    m = re.search(r"Inner task failed: (.+?)\.?$", plain)
    return m.group(1).split(" inside ")[0].strip("'") if m else "?"


def collect_local_run(run_dir: Path, out: Path, threshold: float = 0.0) -> dict[str, Any]:
    """Gather the run's results from kfp.local's folders: copy submission.csv, read the tune and retrain outputs."""

    def find(pattern: str) -> Path | None:
        return next(iter(sorted(run_dir.glob(pattern))), None)

    tuned = find("tune/tuned/experiment.json")
    if tuned is None:
        raise UserError(f"{run_dir}: the tune step left no tuned/experiment.json")
    final = json.loads(tuned.read_text())
    from pipeline.workflow.steps import summarize_tuning

    tuning = summarize_tuning(final, threshold)
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "tuning_dir": str((run_dir / "tune" / "tuned" / "dryrun").resolve()),  # the kept tune it links to
        **tuning,
        "submitted": False,
    }
    retrain_json = find("**/retrain/model/retrain.json")
    if retrain_json is not None:
        summary["retrain"] = json.loads(retrain_json.read_text())
    submission = find("**/predict/submission")
    if submission is not None:
        shutil.copyfile(submission, out / "submission.csv")
        summary["submitted"] = True
        summary["submission"] = str(out / "submission.csv")
    saved_model = find("**/export/saved_model")
    if saved_model is not None:  # the model folder a server watches: `serve --model` or TF Serving
        shutil.copytree(saved_model, out / LOCAL_SAVED_MODEL, dirs_exist_ok=True)
        summary["saved_model"] = str(out / LOCAL_SAVED_MODEL)
    (out / "experiment.json").write_text(json.dumps(final, indent=2) + "\n")
    summary["experiment_json"] = str(out / "experiment.json")
    return summary
