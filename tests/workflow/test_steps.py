"""The steps' library functions (pipeline.workflow.steps), called as the components call them."""

from __future__ import annotations

import pytest
import yaml

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment, dump_yaml
from pipeline.workflow import steps
from tests.conftest import REPO, SAMPLE

LOCAL_EXPERIMENT = REPO / "experiments" / "random.yaml"


def random_experiment():
    if not LOCAL_EXPERIMENT.exists():
        pytest.skip(f"{LOCAL_EXPERIMENT} not written yet")
    return yaml.safe_load(LOCAL_EXPERIMENT.read_text())


def test_prepare_data_validates_and_copies(tmp_path):
    info = steps.prepare_data(SAMPLE, tmp_path / "train", tmp_path / "test")
    assert info["train_rows"] == 2000 and info["test_rows"] == 500
    assert info["files"] == {
        "train": "train.csv.gz",
        "test": "test.csv.gz",
        "sample_submission": "sample_submission.csv",
    }
    assert (tmp_path / "test" / "sample_submission.csv").is_file()


def test_append_trial_args_goes_to_the_primary_container():
    exp = random_experiment()
    args = steps.trial_budget_args(trial_max_rows=100, trial_epochs=2)
    assert args == ["--max-rows=100", "--epochs=2"]
    command = steps.append_trial_args(Experiment(exp), args).primary_container()["command"]
    assert command[:3] == ["python", "-m", "trial"] and command[-2:] == args
    assert steps.trial_budget_args() == []


def test_read_experiment_from_path_text_and_project_root(monkeypatch, tmp_path):
    random_experiment()
    exp = steps.read_experiment(str(LOCAL_EXPERIMENT))
    assert exp.source == str(LOCAL_EXPERIMENT) and exp.name == "digits-random"
    monkeypatch.chdir(tmp_path)  # a relative path falls back to the project root
    assert steps.read_experiment("experiments/random.yaml").raw == exp.raw
    from_text = steps.read_experiment(LOCAL_EXPERIMENT.read_text())
    assert (from_text.raw, from_text.source) == (exp.raw, "<experiment text>")


def test_read_experiment_reports_the_linters_first_error(tmp_path):
    exp = random_experiment()
    exp["spec"]["objective"]["type"] = "maximise"
    exp["spec"]["maxTrialCount"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml(exp))
    with pytest.raises(UserError, match=r"bad.yaml: spec\.\S+: error: .*\(and \d+ more: katib-digits lint "):
        steps.read_experiment(str(bad))


def test_tune_rejects_an_unknown_backend(tmp_path):
    with pytest.raises(UserError, match="backend: 'slurm' is not one of katib, optuna"):
        steps.tune(Experiment({"spec": {}}), "slurm", tmp_path)


def test_require_succeeded():
    failed = {
        "metadata": {"name": "e"},
        "status": {
            "conditions": [
                {"type": "Running", "status": "False"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "ExperimentMaxFailedTrialsReached",
                    "message": "3 failed",
                },
            ]
        },
    }
    with pytest.raises(UserError, match=r"Experiment e Failed \(ExperimentMaxFailedTrialsReached\): 3 failed; logs"):
        steps.require_succeeded(failed, "logs")
    steps.require_succeeded({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})


@pytest.mark.parametrize("threshold, reached", [(0.0, True), (0.9, True), (0.95, False)])
def test_summarize_tuning(threshold, reached):
    final = {
        "kind": "Experiment",
        "spec": {"objective": {"type": "maximize", "objectiveMetricName": "val_accuracy"}},
        "status": {
            "currentOptimalTrial": {
                "bestTrialName": "e-abc",
                "parameterAssignments": [{"name": "dropout", "value": "0.2"}],
                "observation": {"metrics": [{"name": "val_accuracy", "min": "0.5", "max": "0.9", "latest": "0.8"}]},
            }
        },
    }
    summary = steps.summarize_tuning(final, threshold)
    assert summary["objective"] == pytest.approx(0.9) and summary["reached"] is reached
    assert summary["assignments"] == {"dropout": "0.2"} and summary["best_trial"] == "e-abc"
