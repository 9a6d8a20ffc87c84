"""The KFP v2 pipeline itself: prepare -> tune -> gate -> retrain -> predict, and export (the SavedModel),
with cleanup on exit; its run arguments; and the compile to IR YAML.

`build_pipeline(image)` returns the @dsl.pipeline; `pipeline_arguments` (with `experiment_argument`) the
arguments a run of it takes; `compile_pipeline` writes the IR YAML for upload and `compile_components`
one component YAML per step. Running it is `local_run` (kfp.local, here) or `server_run` (a KFP server).
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.image import IMAGE
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS
from pipeline.workflow.steps import DATA_MOUNT, DATA_PVC, EXPORT_DIR, in_project

PIPELINE_NAME = "katib-digits"
DEFAULT_IMAGE = IMAGE  # katib-digits:<version>: what the Dockerfile is built as and experiments/*.yaml run
DEFAULT_EXPERIMENT = "experiments/random.yaml"


@dataclass(frozen=True)
class Budget:
    """How much work a run does. 0 keeps the Experiment's own value (or the trial's / retrain's default)."""

    max_trial_count: int = 0
    parallel_trial_count: int = 0
    trial_max_rows: int = 0
    trial_epochs: int | None = 0  # None: the local default, resolved per Experiment by local_run.local_budget()
    retrain_epochs: int = RETRAIN_EPOCHS
    retrain_val_fraction: float = 0.0
    retrain_ensemble: int = RETRAIN_ENSEMBLE
    threshold: float = 0.0


# Each step's limit on a cluster (kfp-kubernetes sets the pod's activeDeadlineSeconds) and its retries
# (a lost node, an evicted pod); the tune step's own `timeout_s` bounds the Experiment.
TIMEOUTS_S = {"prepare": 3600, "tune": 48 * 3600, "retrain": 24 * 3600, "predict": 3600, "export": 3600, "cleanup": 600}
RETRIES = {"prepare": 2, "tune": 2, "retrain": 1, "predict": 2, "export": 1, "cleanup": 2}
RETRY_BACKOFF_S, RETRY_BACKOFF_FACTOR = 30, 2
POD_START_SLACK_S = 600  # scheduling and image pulls: a pod's own deadline starts only when it runs


def retry_window_s(step: str) -> int:
    """The step's backoff_max_duration. Argo counts it from the first attempt's start and ends the
    retries, and kills a running retry, at that mark (operator.go, processNodeRetries); kfp's default,
    3600 s, would stop tune and retrain from ever being retried. So: every attempt's whole timeout
    and the backoffs between them."""
    retries = RETRIES[step]
    waits = sum(RETRY_BACKOFF_S * RETRY_BACKOFF_FACTOR**i for i in range(retries))
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
            task.set_retry(
                num_retries=RETRIES[step],
                backoff_duration=f"{RETRY_BACKOFF_S}s",
                backoff_factor=RETRY_BACKOFF_FACTOR,
                backoff_max_duration=f"{retry_window_s(step)}s",
            )
        if image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(image_pull_secrets))
        if data_pvc is not None:
            kubernetes.mount_pvc(task, pvc_name=data_pvc, mount_path=DATA_MOUNT)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Tune the digit-recognizer CNN with one Katib Experiment, retrain the best "
        "trial on all labelled rows, write submission.csv and export the model as a "
        "SavedModel for KServe.",
    )
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
        tune_state_dir: str = "",
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
            tune_state_dir: Backend optuna: a folder the tune step keeps its dry-run in, keyed by the Experiment, budget and data, so a rerun resumes it (a local run's OUT/kfp-local/tune-state); empty: the step's own artifact, new each run.
        """
        cleanup = on_cluster(
            c.cleanup(backend=backend, namespace=namespace, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "cleanup"
        )
        cleanup.set_display_name("stop this run's Experiments").set_caching_options(False)
        with dsl.ExitHandler(cleanup, name="tune-and-submit"):
            prepare = on_cluster(c.prepare(data_dir=data_dir), "prepare", data_pvc).set_display_name("prepare data")
            prepare.set_caching_options(False)  # a cache keyed by a folder's name would miss changed data
            tune = on_cluster(
                c.tune(
                    experiment=experiment,
                    backend=backend,
                    train_data=prepare.outputs["train_data"],
                    max_trial_count=max_trial_count,
                    parallel_trial_count=parallel_trial_count,
                    trial_max_rows=trial_max_rows,
                    trial_epochs=trial_epochs,
                    namespace=namespace,
                    timeout_s=timeout_s,
                    delete_after=delete_after,
                    data_dir=data_dir,
                    data_pvc=data_pvc,
                    trial_image=trial_image,
                    image_pull_secrets=",".join(image_pull_secrets),
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    tune_state_dir=tune_state_dir,
                ),
                "tune",
            ).set_display_name("tune (Katib or Optuna)")
            tune.set_caching_options(False)  # a new Experiment per run, never a cached one
            gate = c.submit_gate(
                objective=tune.outputs["objective"], objective_type=tune.outputs["objective_type"], threshold=threshold
            ).set_display_name("objective reaches threshold?")
            # The condition reads the gate's single output: kfp.local (2.17) resolves `<task>.output`
            # in a dsl.If but not a named output of a multi-output task.
            with dsl.If(gate.output == True, name="objective-reached"):  # noqa: E712 - kfp builds a CEL expression
                retrain = on_cluster(
                    c.retrain(
                        tuned=tune.outputs["tuned"],
                        train_data=prepare.outputs["train_data"],
                        epochs=retrain_epochs,
                        val_fraction=retrain_val_fraction,
                        ensemble=retrain_ensemble,
                    ),
                    "retrain",
                )
                retrain.set_display_name("retrain best").set_cpu_request("2").set_memory_request("4G")
                on_cluster(
                    c.predict(model=retrain.outputs["model"], test_data=prepare.outputs["test_data"]), "predict"
                ).set_display_name("predict submission.csv")
                export = on_cluster(
                    c.export(model=retrain.outputs["model"], export_dir=export_dir), "export", data_pvc
                ).set_display_name("export SavedModel")
                export.set_caching_options(False)  # publishing a version on the volume is the point of the step

    return digits_pipeline


def pipeline_arguments(
    data_dir: str,
    experiment: str,
    backend: str,
    budget: Budget,
    namespace: str = "",
    timeout_s: int = 6 * 3600,
    delete_after: bool = False,
    data_pvc: str | None = None,
    trial_image: str | None = None,
    export_dir: str = EXPORT_DIR,
    tune_state_dir: str = "",
) -> dict[str, Any]:
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
    return {
        "data_dir": data_dir,
        "experiment": experiment,
        "backend": backend,
        **asdict(budget),
        "namespace": namespace,
        "timeout_s": timeout_s,
        "delete_after": delete_after,
        "export_dir": export_dir,
        "tune_state_dir": tune_state_dir,
        **extra,
    }


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
