"""The pipeline's typed kfp components: thin wrappers over pipeline.workflow.steps and pipeline.submission.

Each body imports the project inside the function (kfp ships only the function's
source to the container; our image has the project installed), maps artifact
paths to arguments, and records metadata. `make_components(image)` builds them
for one image, since kfp fixes `base_image` when a component is defined.
"""

from types import SimpleNamespace
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def prepare(data_dir: str, train_data: Output[Dataset], test_data: Output[Dataset]):
    """Validate train.csv and test.csv like the trial does; output them as Datasets."""
    from pipeline.workflow.steps import prepare_data, resolve_data_dir, step_errors

    with step_errors():
        info = prepare_data(resolve_data_dir(data_dir), train_data.path, test_data.path)
    train_data.metadata.update({"rows": info["train_rows"], "file": info["files"]["train"]})
    test_data.metadata.update({"rows": info["test_rows"], "file": info["files"]["test"],
                               "sample_submission": info["files"].get("sample_submission", "")})
    print(f"prepare: {info['train_rows']} labelled rows, {info['test_rows']} test rows")


def tune(experiment: str, backend: str, train_data: Input[Dataset], max_trial_count: int,
         parallel_trial_count: int, trial_max_rows: int, trial_epochs: int, namespace: str, timeout_s: int,
         delete_after: bool, tuned: Output[Artifact], metrics: Output[Metrics],
         ) -> NamedTuple("TuneOutputs", [("objective", float), ("objective_type", str), ("optimal_trial", dict)]):
    """Run the Experiment (Katib or the local Optuna dry-run); output the final Experiment object."""
    import os
    from collections import namedtuple

    from pipeline.workflow.steps import read_experiment, step_errors, summarize_tuning, tune as run_tuning, write_json

    with step_errors():
        exp = read_experiment(experiment)
        train_file = os.path.join(train_data.path, train_data.metadata["file"])
        final = run_tuning(exp, backend, os.path.join(tuned.path, "dryrun"), train_file, max_trial_count,
                           parallel_trial_count, trial_max_rows, trial_epochs, namespace, timeout_s, delete_after)
        summary = summarize_tuning(final)
    write_json(os.path.join(tuned.path, "experiment.json"), final)
    tuned.metadata.update({"best_trial": summary["best_trial"], "backend": backend,
                           "experiment": final.get("metadata", {}).get("name", "")})
    tuned.metadata.update({f"param.{k}": v for k, v in summary["assignments"].items()})
    metrics.log_metric(summary["objective_metric"], summary["objective"])
    print(f"tune: best trial {summary['best_trial']}: {summary['objective_metric']}={summary['objective']:g} "
          + " ".join(f"{k}={v}" for k, v in summary["assignments"].items()))
    optimal = final["status"]["currentOptimalTrial"]
    return namedtuple("TuneOutputs", ["objective", "objective_type", "optimal_trial"])(
        summary["objective"], summary["objective_type"], optimal)


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


def retrain(tuned: Input[Artifact], train_data: Input[Dataset], epochs: int, val_fraction: float, ensemble: int,
            model: Output[Model], metrics: Output[Metrics]):
    """Retrain the best trial's parameters on all labelled rows (`ensemble` > 1: that many seeds)."""
    import json
    import os

    from pipeline.katib.experiment import Experiment
    from pipeline.katib.result import load_result
    from pipeline.submission.retrain import train_best
    from pipeline.workflow.steps import step_errors, write_json

    with step_errors():
        result = load_result(os.path.join(tuned.path, "experiment.json"))
        report = train_best(Experiment(result.experiment, result.source), result.optimal.assignments,
                            os.path.join(train_data.path, train_data.metadata["file"]), model.path,
                            epochs or None, val_fraction, ensemble=ensemble)
    write_json(os.path.join(model.path, "retrain.json"), {**report, "assignments": result.optimal.assignments})
    model.metadata.update({"framework": "keras", "members": report.get("members", 1), "epochs": report["epochs"],
                           "best_trial": result.optimal.name})
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
        rows = predict_submission(model.path,  # model.keras, or the members of an ensemble
                                  os.path.join(test_data.path, test_data.metadata["file"]), submission.path,
                                  os.path.join(test_data.path, sample) if sample else None)
    submission.metadata.update({"rows": rows, "format": "csv", "columns": "ImageId,Label"})
    print(f"predict: submission.csv with {rows} rows")
    return rows


STEPS = (prepare, tune, submit_gate, retrain, predict)


def make_components(image: str) -> SimpleNamespace:
    """The components, all running in `image` (which has the project installed)."""
    return SimpleNamespace(**{
        fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False) for fn in STEPS
    })
