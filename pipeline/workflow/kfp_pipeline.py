"""The KFP v2 pipeline: prepare -> tune -> gate -> retrain -> predict, and export (the SavedModel).

`build_pipeline(image)` returns the @dsl.pipeline; `compile_pipeline` writes the
IR YAML for upload; `run_local` runs it with kfp.local (tuning with Optuna);
`submit` sends it to a KFP server (tuning with Katib). The command line is
`pipeline.cli.pipeline` (`katib-digits pipeline`).
"""

import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator


from pipeline.errors import UserError
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS
from pipeline.workflow.steps import DATA_MOUNT, DATA_PVC, ERROR_PREFIX, EXPORT_DIR, REPO, in_project

PIPELINE_NAME = "katib-digits"
DEFAULT_IMAGE = "katib-digits:0.1.0"  # what the Dockerfile's build comment tags and experiments/*.yaml run
DEFAULT_EXPERIMENT = "experiments/random.yaml"
LOCAL_SAVED_MODEL = "models/digits"  # under a local run's --out: the export step's SavedModel, version 1


@dataclass(frozen=True)
class Budget:
    """How much work a run does. 0 keeps the Experiment's own value (or the trial's / retrain's default)."""

    max_trial_count: int = 0
    parallel_trial_count: int = 0
    trial_max_rows: int = 0
    trial_epochs: int | None = 0  # None: the local default, resolved per Experiment by local_budget()
    retrain_epochs: int = RETRAIN_EPOCHS
    retrain_val_fraction: float = 0.0
    retrain_ensemble: int = RETRAIN_ENSEMBLE
    threshold: float = 0.0


# `pipeline run --local` on a 2-core laptop: 3 one-epoch trials on 300 rows, then a 3-epoch retrain
# on every labelled row. A user with the full data passes bigger flags.
LOCAL_TRIAL_EPOCHS = 1
LOCAL_BUDGET = Budget(max_trial_count=3, parallel_trial_count=1, trial_max_rows=300, trial_epochs=None,
                      retrain_epochs=3, retrain_ensemble=1)


def local_budget(budget: Budget, experiment) -> Budget:
    """`budget` with the local default trial epochs resolved: LOCAL_TRIAL_EPOCHS, except where the
    Experiment's algorithm gives each trial its epochs (hyperband, asha: the one budget rule refuses
    to override them), which keep their own."""
    from pipeline.katib.budget import resource_override_refusal

    if budget.trial_epochs is not None:
        return budget
    if resource_override_refusal(experiment, f"--epochs={LOCAL_TRIAL_EPOCHS}", "the local default") is None:
        return replace(budget, trial_epochs=LOCAL_TRIAL_EPOCHS)
    print(f"pipeline: {experiment.algorithm_name} gives each trial its epochs: the local default "
          f"--trial-epochs {LOCAL_TRIAL_EPOCHS} is not applied", flush=True)
    return replace(budget, trial_epochs=0)


# Each step's limit on a cluster (kfp-kubernetes sets the pod's activeDeadlineSeconds) and its retries
# (a lost node, an evicted pod); the tune step's own `timeout_s` bounds the Experiment.
TIMEOUTS_S = {"prepare": 3600, "tune": 48 * 3600, "retrain": 24 * 3600, "predict": 3600, "export": 3600,
              "cleanup": 600}
RETRIES = {"prepare": 2, "tune": 2, "retrain": 1, "predict": 2, "export": 1, "cleanup": 2}
RETRY_BACKOFF_S, RETRY_BACKOFF_FACTOR = 30, 2
POD_START_SLACK_S = 600  # scheduling and image pulls: a pod's own deadline starts only when it runs


def retry_window_s(step: str) -> int:
    """The step's backoff_max_duration. Argo counts it from the first attempt's start and ends the
    retries, and kills a running retry, at that mark (operator.go, processNodeRetries); kfp's default,
    3600 s, would stop tune and retrain from ever being retried. So: every attempt's whole timeout
    and the backoffs between them."""
    retries = RETRIES[step]
    waits = sum(RETRY_BACKOFF_S * RETRY_BACKOFF_FACTOR ** i for i in range(retries))
    return (retries + 1) * (TIMEOUTS_S[step] + POD_START_SLACK_S) + waits


def build_pipeline(image: str = DEFAULT_IMAGE, image_pull_secrets: tuple[str, ...] = (), retries: bool = True):
    """The pipeline function, every step running in `image` (pulled with `image_pull_secrets`).
    `retries=False` for kfp.local, which honours retry policies: a step failing on bad input would
    otherwise be run three times, with 30 s and 60 s pauses, before its error is shown."""
    from kfp import dsl, kubernetes

    from pipeline.workflow.components import make_components

    c = make_components(image)

    def on_cluster(task, step: str, data_pvc=None):
        """What only a cluster sees (kfp.local ignores it): limits, retries, pull secrets, the data volume."""
        kubernetes.set_timeout(task, TIMEOUTS_S[step])
        if retries:
            task.set_retry(num_retries=RETRIES[step], backoff_duration=f"{RETRY_BACKOFF_S}s",
                           backoff_factor=RETRY_BACKOFF_FACTOR, backoff_max_duration=f"{retry_window_s(step)}s")
        if image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(image_pull_secrets))
        if data_pvc is not None:
            kubernetes.mount_pvc(task, pvc_name=data_pvc, mount_path=DATA_MOUNT)
        return task

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Tune the digit-recognizer CNN with one Katib Experiment, retrain the best "
                              "trial on all labelled rows, write submission.csv and export the model as a "
                              "SavedModel for KServe.")
    def digits_pipeline(
        data_dir: str = DATA_MOUNT,
        data_pvc: str = DATA_PVC,
        experiment: str = DEFAULT_EXPERIMENT,
        trial_image: str = image,
        backend: str = "katib",
        max_trial_count: int = 0,
        parallel_trial_count: int = 0,
        trial_max_rows: int = 0,
        trial_epochs: int = 0,
        retrain_epochs: int = Budget.retrain_epochs,
        retrain_val_fraction: float = 0.0,
        retrain_ensemble: int = Budget.retrain_ensemble,
        threshold: float = 0.0,
        namespace: str = "",
        timeout_s: int = 6 * 3600,
        delete_after: bool = False,
        export_dir: str = EXPORT_DIR,
    ):
        """Tune, retrain the best trial on every labelled row, predict the test file, export the model.

        Args:
            data_dir: Folder with Kaggle's train.csv(.gz) and test.csv(.gz), on the data volume (mounted at /data); locally, a folder on this machine.
            data_pvc: PersistentVolumeClaim holding the data: mounted at /data in the prepare step and, through the Experiment the tune step creates, in every trial.
            experiment: Katib Experiment: a path in the image (experiments/tpe.yaml) or the Experiment itself as YAML or one-line JSON.
            trial_image: Image Katib's trial pods run (python -m trial).
            backend: katib (on the cluster) or optuna (the local dry-run inside the tune step).
            max_trial_count: Overrides spec.maxTrialCount (0 keeps the Experiment's).
            parallel_trial_count: Overrides spec.parallelTrialCount (0 keeps the Experiment's).
            trial_max_rows: Each trial reads only the first N rows (0 = all).
            trial_epochs: Each trial trains N epochs (0 = the trial template's).
            retrain_epochs: Epochs of the retrain on all rows (0 = the best trial's).
            retrain_val_fraction: Hold-out for reporting the retrain (0 = every row trains).
            retrain_ensemble: Retrain N models (seeds 0..N-1) and average their predictions.
            threshold: Submit only when the tuned objective reaches this (>= to maximize, <= to minimize; 0 = always).
            namespace: Namespace of the Katib Experiment (empty: the step's own namespace).
            timeout_s: Seconds to wait for the Experiment (and for its trials still running after it ends).
            delete_after: Delete the Experiment when the tune step ends.
            export_dir: Model folder on the data volume (mounted at /data) where the export step adds this run's SavedModel as the next version, for KServe (deploy/kserve/); empty: the step's artifact only.
        """
        cleanup = on_cluster(c.cleanup(backend=backend, namespace=namespace, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                             "cleanup")
        cleanup.set_display_name("stop this run's Experiments").set_caching_options(False)
        with dsl.ExitHandler(cleanup, name="tune-and-submit"):
            prepare = on_cluster(c.prepare(data_dir=data_dir), "prepare", data_pvc).set_display_name("prepare data")
            prepare.set_caching_options(False)  # a cache keyed by a folder's name would miss changed data
            tune = on_cluster(c.tune(
                experiment=experiment, backend=backend, train_data=prepare.outputs["train_data"],
                max_trial_count=max_trial_count, parallel_trial_count=parallel_trial_count,
                trial_max_rows=trial_max_rows, trial_epochs=trial_epochs, namespace=namespace,
                timeout_s=timeout_s, delete_after=delete_after, data_dir=data_dir, data_pvc=data_pvc,
                trial_image=trial_image, image_pull_secrets=",".join(image_pull_secrets),
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ), "tune").set_display_name("tune (Katib or Optuna)")
            tune.set_caching_options(False)  # a new Experiment per run, never a cached one
            gate = c.submit_gate(objective=tune.outputs["objective"], objective_type=tune.outputs["objective_type"],
                                 threshold=threshold).set_display_name("objective reaches threshold?")
            # The condition reads the gate's single output: kfp.local (2.17) resolves `<task>.output`
            # in a dsl.If but not a named output of a multi-output task.
            with dsl.If(gate.output == True, name="objective-reached"):  # noqa: E712 - kfp builds a CEL expression
                retrain = on_cluster(c.retrain(tuned=tune.outputs["tuned"], train_data=prepare.outputs["train_data"],
                                               epochs=retrain_epochs, val_fraction=retrain_val_fraction,
                                               ensemble=retrain_ensemble), "retrain")
                retrain.set_display_name("retrain best").set_cpu_request("2").set_memory_request("4G")
                on_cluster(c.predict(model=retrain.outputs["model"], test_data=prepare.outputs["test_data"]),
                           "predict").set_display_name("predict submission.csv")
                export = on_cluster(c.export(model=retrain.outputs["model"], export_dir=export_dir), "export",
                                    data_pvc).set_display_name("export SavedModel")
                export.set_caching_options(False)  # publishing a version on the volume is the point of the step

    return digits_pipeline


def pipeline_arguments(data_dir: str, experiment: str, backend: str, budget: Budget, namespace: str = "",
                       timeout_s: int = 6 * 3600, delete_after: bool = False, data_pvc: str | None = None,
                       trial_image: str | None = None, export_dir: str = EXPORT_DIR) -> dict[str, Any]:
    """The pipeline's run arguments (same names as the pipeline function's parameters; None keeps its default)."""
    if backend not in ("katib", "optuna"):
        raise UserError(f"backend: {backend!r} is not one of katib, optuna")
    if budget.trial_epochs is None:
        raise ValueError("resolve the local default trial epochs first (local_budget)")
    if budget.trial_epochs or budget.trial_max_rows:  # refused here, before a run is made, when we can read it
        from pipeline.workflow.steps import read_experiment, refuse_resource_overrides

        text = "\n" in experiment or experiment.lstrip().startswith(("{", "apiVersion"))
        if text or in_project(experiment).is_file():
            refuse_resource_overrides(read_experiment(experiment), budget.trial_max_rows, budget.trial_epochs)
    extra = {k: v for k, v in (("data_pvc", data_pvc), ("trial_image", trial_image)) if v is not None}
    return {"data_dir": data_dir, "experiment": experiment, "backend": backend, **asdict(budget),
            "namespace": namespace, "timeout_s": timeout_s, "delete_after": delete_after, "export_dir": export_dir,
            **extra}


def compile_pipeline(out: str | Path, image: str = DEFAULT_IMAGE, image_pull_secrets: tuple[str, ...] = ()) -> Path:
    """Write the IR YAML (PipelineSpec) that a KFP server accepts for upload."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, image_pull_secrets), str(out))
    return out


def compile_components(folder: str | Path, image: str = DEFAULT_IMAGE) -> list[Path]:
    """One component YAML per step, for `kfp.components.load_component_from_file` in your own pipelines."""
    from kfp import compiler

    from pipeline.workflow.components import make_components

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, component in vars(make_components(image)).items():
        path = folder / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        written.append(path)
    return written


# --- local run -------------------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """Passes writes through, remembering the last `katib-digits: error:` line a step printed."""

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
    container = client.containers.run(image=image, command=command, detach=True, stdout=True, stderr=True,
                                      volumes=volumes, **run_args)
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


def run_local(data_dir: str | Path, experiment_path: str | Path, out: str | Path,
              budget: Budget = LOCAL_BUDGET, image: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline with kfp.local (Optuna tuning); copy submission.csv, summary.json and the
    SavedModel (`out/models/digits/1/`) to `out`.

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
    refuse_resource_overrides(exp, budget.trial_max_rows, budget.trial_epochs)
    out = Path(out).resolve()
    pipeline_root = out / "kfp-local"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    for stale in ("submission.csv", "summary.json", "experiment.json"):  # never mistake an old result for this run's
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / LOCAL_SAVED_MODEL, ignore_errors=True)
    before = set(pipeline_root.iterdir())
    if image is None:
        # The step reads the file itself (same machine), so its messages name it.
        arguments = pipeline_arguments(str(data_dir), str(experiment_path), "optuna", budget, export_dir="")
        runner = local.SubprocessRunner(use_venv=False)
    else:
        staged = pipeline_root / "input-data"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(data_dir, staged)
        pipeline_root.chmod(0o777)  # the image runs as UID 1000
        arguments = pipeline_arguments(str(staged), experiment_argument(str(experiment_path)), "optuna", budget,
                                       export_dir="")
        runner = local.DockerRunner()
    local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True)
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    containers = _containers_removed_after_exit() if image else contextlib.nullcontext()
    with _step_environment(), containers, warnings.catch_warnings(), contextlib.redirect_stdout(tee):
        # kfp.local warns that our image name lacks "python" and that display names/resources are
        # ignored locally: both expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            build_pipeline(image or DEFAULT_IMAGE, retries=False)(**arguments)
        except RuntimeError as exc:
            step = _failed_step(str(exc))
            if tee.error:
                raise UserError(f"pipeline step {step}: {tee.error}") from None
            raise RuntimeError(f"pipeline step {step} failed (its log is above)") from None
    runs = sorted((p for p in set(pipeline_root.iterdir()) - before if p.name != "input-data"),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RuntimeError(f"kfp.local wrote no run folder under {pipeline_root}")
    summary = collect_local_run(runs[-1], out, budget.threshold)
    summary.update(seconds=round(time.perf_counter() - started, 1), data_dir=str(data_dir),
                   experiment_file=str(experiment_path), budget=asdict(budget), summary=str(out / "summary.json"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _failed_step(message: str) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    m = re.search(r"Inner task failed: (.+?)\.?$", plain)
    return m.group(1).split(" inside ")[0].strip("'") if m else "?"


def collect_local_run(run_dir: Path, out: Path, threshold: float = 0.0) -> dict[str, Any]:
    """Gather the run's results from kfp.local's folders: copy submission.csv, read the tune and retrain outputs."""
    def find(pattern: str) -> Path | None:
        return next(iter(sorted(run_dir.glob(pattern))), None)

    final = json.loads(find("tune/tuned/experiment.json").read_text())
    from pipeline.workflow.steps import summarize_tuning

    tuning = summarize_tuning(final, threshold)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "tuning_dir": str(run_dir / "tune" / "tuned" / "dryrun"),
                               **tuning, "submitted": False}
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


# --- KFP server ------------------------------------------------------------------------------


def experiment_argument(experiment: str) -> str:
    """What the tune step gets: a file here is sent as its content (one-line JSON, which the KFP UI
    also shows and edits), after the same check the step makes; anything else names a file in the image."""
    import copy

    from pipeline.workflow.steps import SOURCE_ANNOTATION, read_experiment

    path = Path(experiment)
    if path.is_file():
        raw = copy.deepcopy(read_experiment(str(path)).raw)
        raw.setdefault("metadata", {}).setdefault("annotations", {})[SOURCE_ANNOTATION] = experiment
        return json.dumps(raw, separators=(",", ":"))
    return experiment


def run_url(host: str, run_id: str, ui_host: str | None = None) -> str:
    """The run's page in the KFP UI. A full Kubeflow serves the API under /pipeline and the UI under
    /_/pipeline; standalone KFP (or a port-forward to ml-pipeline-ui) serves both at its root."""
    if ui_host:
        base = ui_host.rstrip("/")
    else:
        base = host.rstrip("/")
        if base.endswith("/pipeline") and not base.endswith("/_/pipeline"):
            base = base[: -len("/pipeline")] + "/_/pipeline"
    return f"{base}/#/runs/details/{run_id}"


def submit(host: str, arguments: dict[str, Any], image: str, namespace: str | None = None,
           service_account: str | None = None, experiment_name: str = PIPELINE_NAME, *,
           image_pull_secrets: tuple[str, ...] = (), token: str | None = None, cookies: str | None = None,
           ui_host: str | None = None) -> str:
    """Compile and create a run on a KFP server; returns the run's URL."""
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", image, image_pull_secrets)
        # contacts the server right here
        client = kfp.Client(host=host, namespace=namespace, existing_token=token, cookies=cookies)
        run = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, experiment_name=experiment_name,
            namespace=namespace, service_account=service_account,
            run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        )
    return run_url(host, run.run_id, ui_host)


