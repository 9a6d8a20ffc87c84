"""pipeline.submission.retrain: best trial -> retrain flags -> model -> submission.csv, and the train and predict
commands."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.cli import main as cli_main
from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment, load_experiment
from pipeline.submission.predict import check_submission
from pipeline.submission.retrain import best_trial_flags, drop_flags, load_best, retrain_argv, trial_epochs
from tests.conftest import REPO, SAMPLE


def experiment(epochs_flag="--epochs=3"):
    """A Katib Experiment whose trial command takes two parameters (as in experiments/*.yaml)."""
    command = [
        "python",
        "-m",
        "trial",
        "--data=/data/train.csv.gz",
        "--learning-rate=${trialParameters.learningRate}",
        "--optimizer",
        "${trialParameters.optimizer}",
        "--metrics-file=/var/log/katib/metrics.log",
    ]
    if epochs_flag:
        command.append(epochs_flag)
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "digits"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "val_accuracy"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.0001", "max": "0.01"}},
                {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [
                    {"name": "learningRate", "reference": "lr"},
                    {"name": "optimizer", "reference": "opt"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "training", "image": "katib-digits:latest", "command": command}
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }


BEST = {"lr": "0.002", "opt": "rmsprop"}


def optimal_trial(assignments=BEST):
    return {
        "bestTrialName": "digits-abcdefgh",
        "parameterAssignments": [{"name": k, "value": v} for k, v in assignments.items()],
        "observation": {"metrics": [{"name": "val_accuracy", "min": "0.5", "max": "0.9", "latest": "0.9"}]},
    }


def test_best_trial_flags_substitute_the_assignments():
    flags = best_trial_flags(Experiment(experiment()), BEST)
    assert flags == [
        "--data=/data/train.csv.gz",
        "--learning-rate=0.002",
        "--optimizer",
        "rmsprop",
        "--metrics-file=/var/log/katib/metrics.log",
        "--epochs=3",
    ]


def test_a_template_that_does_not_run_the_trial_is_refused():
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python",
        "train.py",
        "--lr=${trialParameters.learningRate}",
        "--opt=${trialParameters.optimizer}",
    ]
    with pytest.raises(UserError, match="does not run `python -m trial`"):
        best_trial_flags(Experiment(exp), BEST)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--data=/x", "--seed=1"], ["--seed=1"]),
        (["--data", "/x", "--seed=1"], ["--seed=1"]),
        (["--seed", "1", "--epochs", "4", "--dropout=0.3"], ["--seed", "1", "--dropout=0.3"]),
        (["--data-dir=/x"], ["--data-dir=/x"]),  # a different flag that merely starts alike
    ],
)
def test_drop_flags(flags, expected):
    assert drop_flags(flags, ["--data", "--epochs"]) == expected


@pytest.mark.parametrize("epochs_flag, expected", [("--epochs=3", 3), ("", 27)])
def test_trial_epochs_reads_the_template_or_the_trial_default(epochs_flag, expected):
    assert trial_epochs(best_trial_flags(Experiment(experiment(epochs_flag)), BEST)) == expected


def test_retrain_argv_replaces_where_and_how_long(tmp_path):
    flags = best_trial_flags(Experiment(experiment()), BEST)
    argv = retrain_argv(flags, SAMPLE / "train.csv.gz", tmp_path, epochs=None, val_fraction=0.0)
    assert argv == [
        "--learning-rate=0.002",
        "--optimizer",
        "rmsprop",
        f"--data={SAMPLE / 'train.csv.gz'}",
        "--max-rows=0",
        "--val-fraction=0",
        "--epochs=3",
        f"--model-out={tmp_path}",
    ]
    assert "--epochs=7" in retrain_argv(flags, SAMPLE / "train.csv.gz", tmp_path, epochs=7)


@pytest.mark.parametrize("form", ["--x=v", "--x v"])
def test_retrain_argv_keeps_no_value_the_trial_command_gave_a_flag_it_owns(tmp_path, form):
    """Whatever the template says for a flag in the table, the retrain's argv carries only its own value."""
    from pipeline.submission.retrain import RETRAIN_OWNED_FLAGS

    flags = ["--batch-size=32"]
    for k, flag in enumerate(RETRAIN_OWNED_FLAGS):
        flags += [f"{flag}=/from/template/{k}"] if form == "--x=v" else [flag, f"/from/template/{k}"]
    argv = retrain_argv(flags, SAMPLE / "train.csv.gz", tmp_path, epochs=4)
    assert not [a for a in argv if "/from/template/" in a], argv
    assert argv[0] == "--batch-size=32"  # a flag it does not own is kept


def test_retrain_drops_the_experiments_checkpoint_dir(tmp_path):
    """An asha trial's --checkpoint-dir names the experiment's volume, which the retrain neither has nor needs."""
    exp = load_experiment(REPO / "experiments" / "asha.yaml")
    flags = best_trial_flags(
        Experiment(exp), {p["name"]: "1" if p["name"] == "epochs" else "x" for p in exp["spec"]["parameters"]}
    )
    assert any(f.startswith("--checkpoint-dir") for f in flags)
    argv = retrain_argv(flags, SAMPLE / "train.csv.gz", tmp_path, epochs=20)
    assert not any(f.startswith("--checkpoint-dir") for f in argv) and "--epochs=20" in argv


def test_load_best_needs_the_yaml_for_a_bare_trial(tmp_path):
    bare = tmp_path / "best.json"
    bare.write_text(json.dumps(optimal_trial()))
    with pytest.raises(UserError, match=r"best.json: a bare currentOptimalTrial has no trial template; .*--experiment"):
        load_best(bare, None)


def test_load_best_reads_a_dry_run_experiment_json(tmp_path):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps({**experiment(), "status": {"currentOptimalTrial": optimal_trial()}}))
    exp, assignments, objective = load_best(path, None)
    assert exp.name == "digits" and assignments == BEST and objective == pytest.approx(0.9)


def write_submission(path, rows, header="ImageId,Label"):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "header, rows, n, message",
    [
        ("ImageId,label", ["1,3", "2,4"], 2, r"line 1 \(header\): expected 'ImageId,Label'"),
        ("ImageId,Label", ["1,3"], 2, "1 rows, expected 2"),
        ("ImageId,Label", ["1,3", "3,4"], 2, r"line 3: expected '2,<digit 0-9>', found '3,4'"),
        ("ImageId,Label", ["1,3", "2,10"], 2, r"line 3: expected '2,<digit 0-9>', found '2,10'"),
        ("ImageId,Label", ["1,3", "2"], 2, r"line 3: expected '2,<digit 0-9>', found '2'"),
    ],
)
def test_check_submission_rejects_bad_layouts(tmp_path, header, rows, n, message):
    with pytest.raises(UserError, match=message):
        check_submission(write_submission(tmp_path / "s.csv", rows, header), n)


def test_check_submission_against_the_sample(tmp_path):
    ours = write_submission(tmp_path / "s.csv", [f"{i},7" for i in range(1, 501)])
    check_submission(ours, 500, SAMPLE / "sample_submission.csv")
    short = write_submission(tmp_path / "short.csv", [f"{i},7" for i in range(1, 11)])
    with pytest.raises(UserError, match=r"sample_submission.csv: ImageId column \(500 rows\) differs"):
        check_submission(short, 10, SAMPLE / "sample_submission.csv")


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", r"p.json: not valid JSON"),
        (json.dumps({"kind": "Experiment", "spec": {}, "status": {}}), r"p.json: status.currentOptimalTrial: missing"),
        (json.dumps({"bestTrialName": "x", "parameterAssignments": []}), r"p.json: currentOptimalTrial"),
    ],
)
def test_train_command_bad_params_is_one_line_exit_2(tmp_path, capsys, content, message):
    params = tmp_path / "p.json"
    params.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--params", str(params), "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("katib-digits: error: ") and "\n" not in err
    assert re.search(message, err)


@pytest.mark.slow
def test_train_then_predict_commands_write_a_valid_submission(tmp_path, capsys):
    params = tmp_path / "experiment.json"
    params.write_text(
        json.dumps({**experiment(), "status": {"currentOptimalTrial": optimal_trial({"lr": "0.002", "opt": "adam"})}})
    )
    model_dir = tmp_path / "model"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "train",
                "--params",
                str(params),
                "--data",
                str(SAMPLE),
                "--out",
                str(model_dir),
                "--epochs",
                "1",
                "--ensemble",
                "1",
                "--max-rows",
                "300",
                "--val-fraction",
                "0.2",
            ]
        )
    assert exit_info.value.code == 0
    report = json.loads((model_dir / "retrain.json").read_text())
    assert report["epochs"] == 1 and set(report["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert "--optimizer" in report["argv"] and "adam" in report["argv"]
    assert (model_dir / "model.keras").is_file()

    out = tmp_path / "submission.csv"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--model", str(model_dir), "--data", str(SAMPLE), "--out", str(out)])
    assert exit_info.value.code == 0
    check_submission(out, 500, SAMPLE / "sample_submission.csv")
    assert "layout checked against" in capsys.readouterr().out


@pytest.mark.slow
def test_ensemble_trains_members_on_one_split_and_predict_averages_them(tmp_path):
    from pipeline.submission.predict import model_files, predict_submission
    from pipeline.submission.retrain import train_best

    model_dir = tmp_path / "ensemble"
    report = train_best(
        Experiment(experiment()),
        {"lr": "0.002", "opt": "adam"},
        SAMPLE / "train.csv.gz",
        model_dir,
        epochs=1,
        val_fraction=0.2,
        max_rows=200,
        ensemble=2,
    )
    assert report["members"] == 2 and [p.parent.name for p in model_files(model_dir)] == ["member-0", "member-1"]
    assert "--seed=0" in report["argv"][0] and "--seed=1" in report["argv"][1]
    assert all("--split-seed=0" in argv for argv in report["argv"])
    hparams = [json.loads((model_dir / f"member-{k}" / "hparams.json").read_text()) for k in (0, 1)]
    assert [h["seed"] for h in hparams] == [0, 1] and {h["split_seed"] for h in hparams} == {0}
    assert 0 <= report["metrics"]["ensemble_val_accuracy"] <= 1
    n = predict_submission(model_dir, SAMPLE / "test.csv.gz", tmp_path / "s.csv", SAMPLE / "sample_submission.csv")
    assert n == 500
