"""The pipeline's typed kfp components: thin wrappers over pipeline.workflow.steps and pipeline.submission.

Each body imports the project inside the function (kfp ships only the function's
source to the container; our image has the project installed), maps artifact
paths to arguments, and records metadata. `make_components(image)` builds them
for one image, since kfp fixes `base_image` when a component is defined.
"""

from types import SimpleNamespace
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def prepare(data_dir: str, train_data: Output[Dataset], test_data: Output[Dataset]):
    """Validate train.csv and test.csv like the trial does; output them as Datasets.

    Args:
        data_dir: Folder with train.csv(.gz) and test.csv(.gz): on a cluster, on the data volume (mounted at /data).
    """
    from pipeline.workflow.steps import in_project, prepare_data, step_errors

    with step_errors():
        info = prepare_data(in_project(data_dir), train_data.path, test_data.path)
    train_data.metadata.update(
        {
            "rows": info["train_rows"],
            "file": info["files"]["train"],
            "source": info["sources"]["train"],
            "sha256": info["sha256"]["train"],
        }
    )
    test_data.metadata.update(
        {
            "rows": info["test_rows"],
            "file": info["files"]["test"],
            "source": info["sources"]["test"],
            "sha256": info["sha256"]["test"],
            "sample_submission": info["files"].get("sample_submission", ""),
        }
    )
    print(
        f"prepare: {info['train_rows']} labelled rows from {info['sources']['train']}, "
        f"{info['test_rows']} test rows from {info['sources']['test']}"
    )


def tune(
    experiment: str,
    backend: str,
    train_data: Input[Dataset],
    max_trial_count: int,
    parallel_trial_count: int,
    trial_max_rows: int,
    trial_epochs: int,
    namespace: str,
    timeout_s: int,
    delete_after: bool,
    data_dir: str,
    data_pvc: str,
    trial_image: str,
    image_pull_secrets: str,
    run_id: str,
    tune_state_dir: str,
    tuned: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    trials: Output[Markdown],
    # The ignore: kfp's own form for named outputs (it reads this call; only the function's source reaches the
    # container, so a class defined beside it would not be there), which mypy takes for an invalid type.
) -> NamedTuple("TuneOutputs", [("objective", float), ("objective_type", str), ("optimal_trial", dict)]):  # type: ignore[valid-type]
    """Run the Experiment (Katib or the local Optuna dry-run); output the final Experiment object.

    Args:
        experiment: Path of the Experiment YAML in the image (e.g. experiments/tpe.yaml), or the Experiment itself as YAML or one-line JSON.
        backend: katib (create it on the cluster) or optuna (the local dry-run, in this step).
        trial_image: The image Katib's trials run (their pods pull it); empty keeps the YAML's.
        data_pvc: The PersistentVolumeClaim the trials (and prepare) read the data from.
        run_id: Labels the Experiment, so a retried step waits for the one it made and the exit handler finds it.
        tune_state_dir: Backend optuna only: keep the dry-run in a folder here, so the same tune run again resumes (empty: in this step's artifact).
    """
    import os
    import shutil
    from collections import namedtuple

    from pipeline.workflow.reports import html_report, markdown_trials
    from pipeline.workflow.steps import read_experiment, step_errors, summarize_tuning, tune as run_tuning, write_json

    with step_errors():
        exp = read_experiment(experiment)
        train_file = os.path.join(train_data.path, train_data.metadata["file"])
        cluster = {
            "trial_image": trial_image,
            "data_pvc": data_pvc,
            "data_dir": data_dir,
            "run_id": run_id,
            "image_pull_secrets": [s for s in image_pull_secrets.split(",") if s.strip()],
        }
        dryrun = os.path.join(tuned.path, "dryrun")
        final = run_tuning(
            exp,
            backend,
            dryrun,
            train_file,
            max_trial_count,
            parallel_trial_count,
            trial_max_rows,
            trial_epochs,
            namespace,
            timeout_s,
            delete_after,
            cluster=cluster,
            state_dir=tune_state_dir if backend == "optuna" else "",
            data_sha256=train_data.metadata.get("sha256", ""),
        )
        summary = summarize_tuning(final)
    write_json(os.path.join(tuned.path, "experiment.json"), final)
    tuned.metadata.update(
        {
            "best_trial": summary["best_trial"],
            "backend": backend,
            "experiment": final.get("metadata", {}).get("name", ""),
        }
    )
    tuned.metadata.update({f"param.{k}": v for k, v in summary["assignments"].items()})
    metrics.log_metric(summary["objective_metric"], summary["objective"])
    trials_csv = os.path.join(dryrun, "trials.csv")
    with open(trials.path, "w") as fh:
        fh.write(markdown_trials(final, trials_csv if os.path.exists(trials_csv) else None))
    local_html = os.path.join(dryrun, "report.html")
    if os.path.exists(local_html):  # the dry-run's own Optuna plots
        shutil.copyfile(local_html, report.path)
    else:
        with open(report.path, "w") as fh:
            fh.write(html_report(final))
    print(
        f"tune: best trial {summary['best_trial']}: {summary['objective_metric']}={summary['objective']:g} "
        + " ".join(f"{k}={v}" for k, v in summary["assignments"].items())
    )
    optimal = final["status"]["currentOptimalTrial"]
    TuneOutputs = namedtuple("TuneOutputs", ["objective", "objective_type", "optimal_trial"])
    return TuneOutputs(summary["objective"], summary["objective_type"], optimal)


def cleanup(backend: str, namespace: str, run_id: str):
    """The exit handler: delete this run's Experiments that have not ended (a terminated or failed run
    leaves no trials running on the cluster).

    Args:
        run_id: The pipeline run's id, the label the tune step put on its Experiment.
    """
    from pipeline.workflow.steps import stop_experiments

    stop_experiments(backend, namespace, run_id)


def submit_gate(objective: float, objective_type: str, threshold: float) -> bool:
    """True when the tuned objective reaches `threshold` (>= to maximize, <= to minimize; 0 = no gate)."""
    from pipeline.katib.result import reaches

    ok = reaches(objective, threshold or None, objective_type)
    if not threshold:
        print(f"gate: no threshold set; objective {objective:g}: submitting")
    else:
        relation = ">=" if objective_type == "maximize" else "<="
        verdict = "submitting" if ok else "NOT submitting"
        print(f"gate: objective {objective:g}, threshold {relation} {threshold:g}: {verdict}")
    return ok


def retrain(
    tuned: Input[Artifact],
    train_data: Input[Dataset],
    epochs: int,
    val_fraction: float,
    ensemble: int,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Retrain the best trial's parameters on all labelled rows (`ensemble` > 1: that many seeds)."""
    import json
    import os

    from pipeline.katib.experiment import Experiment
    from pipeline.katib.result import load_result
    from pipeline.submission.retrain import train_best
    from pipeline.workflow.steps import step_errors, write_json

    with step_errors():
        result = load_result(os.path.join(tuned.path, "experiment.json"))
        assert result.experiment is not None  # the tune step writes the whole Experiment
        report = train_best(
            Experiment(result.experiment, result.source),
            result.optimal.assignments,
            os.path.join(train_data.path, train_data.metadata["file"]),
            model.path,
            epochs or None,
            val_fraction,
            ensemble=ensemble,
        )
    write_json(os.path.join(model.path, "retrain.json"), {**report, "assignments": result.optimal.assignments})
    model.metadata.update(
        {
            "framework": "keras",
            "members": report.get("members", 1),
            "epochs": report["epochs"],
            "best_trial": result.optimal.name,
        }
    )
    for name, value in report["metrics"].items():
        metrics.log_metric(name, value)
    print(f"retrain: {report['epochs']} epochs: {json.dumps(report['metrics'])}")


def predict(model: Input[Model], test_data: Input[Dataset], submission: Output[Dataset]) -> int:
    """Predict test.csv in order and write submission.csv (checked against sample_submission.csv)."""
    import os

    from pipeline.submission.predict import predict_submission
    from pipeline.workflow.steps import step_errors

    sample = test_data.metadata.get("sample_submission") or None
    with step_errors():
        rows = predict_submission(
            model.path,  # model.keras, or the members of an ensemble
            os.path.join(test_data.path, test_data.metadata["file"]),
            submission.path,
            os.path.join(test_data.path, sample) if sample else None,
            expected_rows=test_data.metadata.get("rows"),
        )
    submission.metadata.update(
        {
            "rows": rows,
            "format": "csv",
            "columns": "ImageId,Label",
            "test_source": test_data.metadata.get("source", ""),
            "test_sha256": test_data.metadata.get("sha256", ""),
        }
    )
    print(f"predict: submission.csv with {rows} rows")
    return rows


def export(model: Input[Model], export_dir: str, saved_model: Output[Model]):
    """The retrained model as a TensorFlow SavedModel (saved_model/1/: pixels 0-255 [N, 28, 28, 1] in, ten
    probabilities out; an ensemble averaged in one graph) for TF Serving and KServe.

    Args:
        export_dir: Model folder on the data volume (mounted at /data) where this run's SavedModel becomes the next version (KServe's storageUri pvc://CLAIM/models/digits); empty: the artifact only.
    """
    from pipeline.workflow.steps import export_model, step_errors

    with step_errors():
        info = export_model(model.path, saved_model.path, export_dir)
    saved_model.metadata.update(
        {
            "framework": "tensorflow",
            "format": "saved_model",
            "signature": info["signature"],
            "published": info["published"],
            "version": info["version"],
        }
    )
    where = f"; published as version {info['version']}: {info['published']}" if info["published"] else ""
    print(f"export: SavedModel {info['saved_model']}{where}")


STEPS = (prepare, tune, submit_gate, retrain, predict, export, cleanup)


def make_components(image: str) -> SimpleNamespace:
    """The components, all running in `image` (which has the project installed)."""
    return SimpleNamespace(
        **{fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in STEPS}
    )
