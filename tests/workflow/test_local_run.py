"""The local run (kfp.local): its budget, the refusals before a run, a failed step's one line, and whole runs."""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
import sys

import pytest
import yaml

from pipeline.cli import main as cli_main
from pipeline.errors import UserError
from pipeline.katib.experiment import dump_yaml, load_unchecked
from pipeline.submission.predict import check_submission
from pipeline.workflow import steps
from pipeline.workflow.definition import Budget
from pipeline.workflow.local_run import LOCAL_BUDGET, StepErrorTee, failed_step_name, local_budget, run_local
from tests.conftest import REPO, SAMPLE

LOCAL_EXPERIMENT = REPO / "experiments" / "random.yaml"


def test_local_budget_is_tiny():
    tiny = local_budget(LOCAL_BUDGET, load_unchecked(LOCAL_EXPERIMENT))
    assert tiny.max_trial_count <= 4 and tiny.trial_epochs == 1 and tiny.trial_max_rows <= 500


@pytest.mark.parametrize("name", ["hyperband", "asha"])
def test_the_local_default_epochs_leave_the_resource_to_hyperband_and_asha(name, capsys):
    resolved = local_budget(LOCAL_BUDGET, load_unchecked(REPO / "experiments" / f"{name}.yaml"))
    assert resolved.trial_epochs == 0 and resolved.trial_max_rows == LOCAL_BUDGET.trial_max_rows
    assert (
        f"{name} gives each trial its epochs: the local default --trial-epochs 1 is not applied"
        in capsys.readouterr().out
    )
    assert local_budget(Budget(trial_epochs=2), load_unchecked(REPO / "experiments" / f"{name}.yaml")).trial_epochs == 2


RESOURCE_REFUSAL = (
    "{path}: spec.algorithm.algorithmSettings.resource_name: trial_epochs (--trial-epochs) would "
    "append --epochs=2 to every trial, overriding --epochs, which {alg} sets per rung from "
    "parameter 'epochs': every rung would train the same; leave it at 0 for {alg}"
)


@pytest.mark.parametrize("name", ["hyperband", "asha"])
@pytest.mark.parametrize("where", ["--local", "--host"])
def test_trial_epochs_that_would_override_the_resource_are_refused_before_a_run(tmp_path, capsys, name, where):
    path = f"experiments/{name}.yaml"
    argv = ["pipeline", "run", "--experiment", path, "--trial-epochs", "2", "--out", str(tmp_path / "out")]
    argv += ["--local"] if where == "--local" else ["--host", "http://127.0.0.1:9"]  # nothing is contacted
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "katib-digits: error: " + RESOURCE_REFUSAL.format(path=path, alg=name)
    assert not (tmp_path / "out").exists()


def test_the_tune_step_refuses_it_too_and_takes_other_budget_flags(tmp_path):
    hyperband = load_unchecked(REPO / "experiments" / "hyperband.yaml")
    with pytest.raises(UserError) as err:
        steps.tune(hyperband, "optuna", tmp_path, trial_epochs=2)
    assert str(err.value) == RESOURCE_REFUSAL.format(path=hyperband.source, alg="hyperband")
    assert not list(tmp_path.iterdir())  # refused before any trial
    steps.refuse_resource_overrides(hyperband, trial_max_rows=300)  # rows are not hyperband's resource
    steps.refuse_resource_overrides(load_unchecked(REPO / "experiments" / "tpe.yaml"), 300, 2)  # tpe has no resource


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pipeline", "run"], "pass exactly one of --local or --host URL"),
        (["pipeline", "run", "--local", "--host", "http://kfp"], "pass exactly one of --local or --host URL"),
        (["pipeline", "run", "--local", "--experiment", "nope.yaml"], "nope.yaml: file not found"),
    ],
)
def test_run_command_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("katib-digits: error: ") and err.endswith(message) and "\n" not in err


def test_tee_keeps_the_last_step_error(capsys):
    tee = StepErrorTee(sys.stdout)
    tee.write("    some log\n    katib-digits: error: data/x/train.csv: line 1 (header): bad\n    more")
    tee.write(" log\n")
    assert tee.error == "data/x/train.csv: line 1 (header): bad"
    assert "more log" in capsys.readouterr().out


def test_failed_step_is_read_from_kfp_local_message():
    message = (
        "Pipeline \x1b[95m'katib-digits'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. "
        "Inner task failed: \x1b[96m'prepare'\x1b[0m."
    )
    assert failed_step_name(message) == "prepare"


# --- whole local runs (kfp.local, each step a subprocess) --------------------------------------


def bad_layout_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "test.csv.gz", data / "test.csv.gz")
    with gzip.open(SAMPLE / "test.csv.gz", "rt") as src, open(data / "train.csv", "w") as dst:
        dst.writelines(line for _, line in zip(range(5), src, strict=False))  # a test file where train.csv should be
    return data


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize(
    "case, step, message",
    [
        ("missing", "prepare", r"data folder not found"),
        ("bad-layout", "prepare", r"train.csv: line 1 \(header\): .*found a test-file header without 'label'"),
    ],
)
def test_bad_data_fails_at_prepare_with_one_line(tmp_path, capsys, case, step, message):
    data = tmp_path / "nowhere" if case == "missing" else bad_layout_data(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "pipeline",
                "run",
                "--local",
                "--data",
                str(data),
                "--experiment",
                str(LOCAL_EXPERIMENT),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"katib-digits: error: pipeline step {step}: ")
    assert re.search(message, err)


@pytest.mark.process
@pytest.mark.slow
def test_invalid_experiment_fails_before_any_step_with_the_linters_message(tmp_path, capsys):
    exp = yaml.safe_load(LOCAL_EXPERIMENT.read_text())
    exp["spec"]["objective"]["type"] = "maximise"
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml(exp))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "pipeline",
                "run",
                "--local",
                "--data",
                str(SAMPLE),
                "--experiment",
                str(bad),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"katib-digits: error: {bad}: spec.objective.type: error: ")
    assert not (tmp_path / "out").exists()  # refused before kfp.local started a step


@pytest.mark.process
@pytest.mark.slow
def test_local_run_writes_submission_and_summary(tmp_path):
    out = tmp_path / "out"
    budget = Budget(max_trial_count=2, parallel_trial_count=2, trial_max_rows=200, trial_epochs=1, retrain_epochs=1)
    summary = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget)
    check_submission(out / "submission.csv", 500, SAMPLE / "sample_submission.csv")
    with open(out / "submission.csv") as fh:
        assert len(list(csv.reader(fh))) == 501
    saved = json.loads((out / "summary.json").read_text())
    assert saved["submitted"] is True and saved["best_trial"] == summary["best_trial"]
    assert saved["objective_metric"] and isinstance(saved["objective"], float)
    assert saved["assignments"] and saved["retrain"]["epochs"] == 1
    final = json.loads((out / "experiment.json").read_text())
    assert final["status"]["currentOptimalTrial"]["bestTrialName"] == summary["best_trial"]
    assert final["spec"]["maxTrialCount"] == 2 and final["status"]["trials"] == 2  # the budget override
    # the export step's SavedModel, version 1 of a model folder a server watches, answers what predict wrote
    assert saved["saved_model"] == str(out / "models" / "digits")
    from pipeline.serving.server import Predictor
    from trial.data import load_test

    served = Predictor(out / "models" / "digits", "digits")
    assert served.saved_model == out / "models" / "digits" / "1"
    with open(out / "submission.csv") as fh:
        labels = [int(row["Label"]) for row in csv.DictReader(fh)][:32]
    probabilities = served.predict(load_test(SAMPLE / "test.csv.gz")[:32].astype("float32"))
    assert [max(range(10), key=p.__getitem__) for p in probabilities] == labels


@pytest.mark.process
@pytest.mark.slow
def test_hyperband_pipeline_runs_with_the_default_local_budget(tmp_path, capsys):
    """`pipeline run --local --experiment experiments/hyperband.yaml`: the local budget (3 trials, 1 at a
    time) meets hyperband's parallelism rule through the one budget rule (pipeline.katib.budget)."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "run", "--local", "--experiment", "experiments/hyperband.yaml", "--out", str(out)])
    assert exit_info.value.code == 0, capsys.readouterr()
    check_submission(out / "submission.csv", 500, SAMPLE / "sample_submission.csv")
    final = json.loads((out / "experiment.json").read_text())
    assert final["spec"]["algorithm"]["algorithmName"] == "hyperband"
    assert (final["spec"]["maxTrialCount"], final["spec"]["parallelTrialCount"]) == (3, 9)
    assert final["status"]["trials"] == 3 and final["status"]["trialsSucceeded"] == 3
    said = capsys.readouterr().out
    assert "parallelTrialCount 1 raised to 9" in said and "Katib would reject this budget" in said


@pytest.mark.process
@pytest.mark.slow
def test_gate_closed_means_no_submission_and_a_rerun_reuses_the_ended_tune(tmp_path, capsys):
    """No submission when the objective misses the threshold. The tune step keeps its dry-run under
    OUT/kfp-local/tune-state/: the same run again finds it ended and runs no trial; fresh=True deletes it
    and tunes anew."""
    out = tmp_path / "out"
    budget = Budget(
        max_trial_count=1, parallel_trial_count=1, trial_max_rows=60, trial_epochs=1, retrain_epochs=1, threshold=1.01
    )  # accuracy can never reach it
    first = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget)
    assert first["submitted"] is False and first["reached"] is False
    assert not (out / "submission.csv").exists()
    (kept,) = (out / "kfp-local" / "tune-state").iterdir()
    assert first["tuning_dir"] == str(kept) and (kept / "trials" / first["best_trial"] / "trial.log").is_file()
    assert f"tune: a new tune in {kept}" in capsys.readouterr().out
    second = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget)
    assert f"tune: the tune in {kept} already ended (ExperimentMaxTrialsReached): 1 trials, none rerun" in (
        capsys.readouterr().out
    )
    assert (second["best_trial"], second["tuning_dir"]) == (first["best_trial"], str(kept))
    assert second["run_dir"] != first["run_dir"]  # a new kfp.local run, the same tune
    assert json.loads((kept / "experiment.json").read_text())["status"]["trials"] == 1
    third = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget, fresh=True)
    said = capsys.readouterr()
    assert "pipeline: --fresh: deleted the kept tunes in" in said.err and "tune: a new tune in" in said.out
    assert third["best_trial"] != first["best_trial"]
