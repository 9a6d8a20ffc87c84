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
from pipeline.submission.retrain import (
    best_trial_flags,
    drop_flags,
    load_best,
    member_argvs,
    retrain_argv,
    trial_epochs,
)
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


def test_one_config_members_train_the_best_trial_with_seeds_as_before(tmp_path):
    """--top-k 1 (the default): every member's argv is what `train --ensemble N` has always given it."""
    flags = best_trial_flags(Experiment(experiment()), BEST)
    data = SAMPLE / "train.csv.gz"
    common = ["--learning-rate=0.002", "--optimizer", "rmsprop", f"--data={data}", "--max-rows=0"]
    assert member_argvs([flags], data, tmp_path, 5) == [
        (tmp_path, [*common, "--val-fraction=0", "--epochs=5", f"--model-out={tmp_path}"])
    ]
    assert member_argvs([flags], data, tmp_path, None, 0.2, 0, ensemble=2) == [
        (
            tmp_path / f"member-{k}",
            [*common, "--val-fraction=0.2", "--epochs=3", f"--model-out={tmp_path / f'member-{k}'}"]
            + [f"--seed={k}", "--split-seed=0"],
        )
        for k in (0, 1)
    ]


def test_top_k_members_take_the_configurations_in_turn_each_with_its_own_seed(tmp_path):
    """K=2, N=3: members 0, 1, 2 train configurations 0, 1, 0 with seeds 0, 1, 2, one split for all."""
    configs = [best_trial_flags(Experiment(experiment()), {"lr": lr, "opt": "adam"}) for lr in ("0.001", "0.002")]
    members = member_argvs(configs, SAMPLE / "train.csv.gz", tmp_path, 4, 0.1, 0, ensemble=3)
    assert [out for out, _ in members] == [tmp_path / f"member-{k}" for k in range(3)]
    argvs = [argv for _, argv in members]
    assert [a[0] for a in argvs] == ["--learning-rate=0.001", "--learning-rate=0.002", "--learning-rate=0.001"]
    assert [a[-2:] for a in argvs] == [[f"--seed={k}", "--split-seed=0"] for k in range(3)]
    assert all(f"--model-out={tmp_path / f'member-{k}'}" in a and "--epochs=4" in a for k, a in enumerate(argvs))


def _trial(name, objective, lr, opt="adam"):
    """A Katib Trial object as `kubectl get trials -o json` lists it."""
    return {
        "kind": "Trial",
        "metadata": {"name": name},
        "spec": {"parameterAssignments": [{"name": "lr", "value": lr}, {"name": "opt", "value": opt}]},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "observation": {"metrics": [{"name": "val_accuracy", "min": "0.1", "max": objective, "latest": objective}]},
        },
    }


def tuned(tmp_path, trials=True):
    """experiment.json whose best is t-best (lr 0.002), and trials.json beside it: three trials, two configurations
    (t-again repeats t-best's)."""
    params = tmp_path / "experiment.json"
    best = optimal_trial({"lr": "0.002", "opt": "adam"})
    best["bestTrialName"] = "t-best"
    params.write_text(json.dumps({**experiment(), "status": {"currentOptimalTrial": best}}))
    if trials:
        items = [
            _trial("t-second", "0.8", "0.001"),
            _trial("t-best", "0.9", "0.002"),
            _trial("t-again", "0.7", "0.002"),
        ]
        (tmp_path / "trials.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return params


@pytest.fixture
def trained(monkeypatch):
    """Each member's argv, with a stand-in for the training itself."""
    import pipeline.submission.retrain as retrain

    argvs = []

    def fake_train_one(argv, model_dir):
        argvs.append(argv)
        model_dir.mkdir(parents=True)  # as the trial does
        return {"argv": argv, "epochs": 1, "metrics": {"accuracy": 0.5}, "model": str(model_dir / "model.keras")}

    monkeypatch.setattr(retrain, "_train_one", fake_train_one)
    return argvs


def train(tmp_path, *args):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--data", str(SAMPLE), "--max-rows", "50", "--out", str(tmp_path / "m"), *args])
    return exit_info.value.code


def test_train_top_k_trains_the_distinct_configurations_in_turn_and_names_their_trials(tmp_path, trained):
    params = tuned(tmp_path)
    assert train(tmp_path, "--params", str(params), "--top-k", "2", "--ensemble", "3", "--epochs", "1") == 0
    assert [a[0] for a in trained] == ["--learning-rate=0.002", "--learning-rate=0.001", "--learning-rate=0.002"]
    assert [a[-2] for a in trained] == ["--seed=0", "--seed=1", "--seed=2"]
    report = json.loads((tmp_path / "m" / "retrain.json").read_text())
    assert report["trials"] == ["t-best", "t-second", "t-best"] and report["argv"] == trained


def test_train_top_k_1_reads_no_trials_and_trains_the_best_trial(tmp_path, trained):
    params = tuned(tmp_path)
    (tmp_path / "trials.json").write_text("not read")
    assert train(tmp_path, "--params", str(params), "--ensemble", "2", "--epochs", "1") == 0
    assert [a[0] for a in trained] == ["--learning-rate=0.002"] * 2
    assert "trials" not in json.loads((tmp_path / "m" / "retrain.json").read_text())


@pytest.mark.parametrize(
    "args, setup, message",
    [
        (["--top-k", "3", "--ensemble", "2"], None, r"--top-k 3: more than the --ensemble 2 members"),
        (["--top-k", "3", "--ensemble", "3"], None, r"trials\.json: 2 distinct configuration\(s\) .*top 3"),
        (["--top-k", "2"], "missing", r"trials\.json: file not found; --top-k 2 .*--trials FILE"),
        (["--top-k", "2"], "{}", r"trials\.json: items: expected a list of Trials"),
        (["--top-k", "2"], '{"items": [{"kind": "Trial"}]}', r"trials\.json: items\[0\]\.metadata\.name: required"),
        (["--top-k", "2", "--trials", "{tmp}/nowhere.json"], None, r"nowhere\.json: file not found"),
        (["--trials", "{tmp}/trials.json"], None, r"^katib-digits: error: --trials: read only with --top-k"),
        (["--top-k", "2", "--experiment", "{tmp}/exp.yaml"], "bare", r"best\.json: spec: missing, a bare current"),
    ],
)
def test_train_top_k_refusals_are_one_line_exit_2(tmp_path, capsys, trained, args, setup, message):
    params = tuned(tmp_path)
    if setup == "missing":
        (tmp_path / "trials.json").unlink()
    elif setup == "bare":
        params = tmp_path / "best.json"
        params.write_text(json.dumps(optimal_trial()))
        (tmp_path / "exp.yaml").write_text(json.dumps(experiment()))
    elif setup is not None:
        (tmp_path / "trials.json").write_text(setup)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert train(tmp_path, "--params", str(params), *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("katib-digits: error: ") and "\n" not in err
    assert re.search(message, err) and not trained


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


@pytest.mark.slow
def test_train_top_k_2_trains_two_configurations_for_real(tmp_path):
    """--top-k 2 --ensemble 2, 1 epoch on 50 rows: each member trained its own trial's configuration."""
    params = tuned(tmp_path)
    assert train(tmp_path, "--params", str(params), "--top-k", "2", "--ensemble", "2", "--epochs", "1") == 0
    hparams = [json.loads((tmp_path / "m" / f"member-{k}" / "hparams.json").read_text()) for k in (0, 1)]
    assert [(h["learning_rate"], h["seed"], h["split_seed"]) for h in hparams] == [(0.002, 0, 0), (0.001, 1, 0)]
    assert json.loads((tmp_path / "m" / "retrain.json").read_text())["trials"] == ["t-best", "t-second"]
