"""bench.sections.accuracy: the retrained default on a hold-out (tiny runs on the sample) and its
--accuracy-flags, checked before any member trains."""

from __future__ import annotations

import gzip
import json

import pytest

from bench.sections import accuracy
from bench.sections.accuracy import ACCURACY_OWNED_FLAGS, INSTEAD, accuracy_recipe
from pipeline.submission.retrain import ENSEMBLE_FLAGS, RETRAIN_OWNED_FLAGS
from tests.conftest import SAMPLE


@pytest.mark.process
@pytest.mark.slow
def test_accuracy_section_averages_members_on_one_hold_out(tmp_path, capsys):
    result = accuracy.measure(SAMPLE, epochs=1, members=2, out=tmp_path)
    # A progress bar per member, advanced by the trial's epoch lines as they arrive.
    progress = capsys.readouterr().err
    assert "accuracy member 0: 100%" in progress and "accuracy member 1: 100%" in progress and "1/1" in progress
    assert result["members"] == 2 and result["epochs_per_member"] == 1
    assert result["hold_out_rows"] == 200  # 10 % of the sample's 2,000 rows
    assert len(result["member_final_val_accuracy"]) == 2 and 0 <= result["ensemble_val_accuracy"] <= 1
    low, high = result["ensemble_val_accuracy_ci95"]
    assert low <= result["ensemble_val_accuracy"] <= high
    assert sorted(p.parent.name for p in (tmp_path / "accuracy-model").glob("member-*/model.keras")) == [
        "member-0",
        "member-1",
    ]
    assert result["cpu_s"] > 0 and result["wall_s"] > 0
    assert all("--split-seed 0" in command for command in result["commands"])
    # Every hold-out error is listed, with a train.csv line that really holds that label, and drawn.
    assert len(result["errors"]) == round((1 - result["ensemble_val_accuracy"]) * 200)
    assert result["errors"], "one epoch on 1,800 rows should leave some errors to check"
    with gzip.open(SAMPLE / "train.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    for error in result["errors"]:
        assert error["label"] != error["predicted"]
        assert int(lines[error["train_csv_line"] - 1].split(",")[0]) == error["label"]
        # an average can only be wrong where some member alone is wrong
        assert 1 <= error["members_wrong"] <= 2
    assert result["errors_every_member_makes"] == sum(e["members_wrong"] == 2 for e in result["errors"])
    # Each member's own errors, counted from its predictions, match the accuracy the trial reported for it.
    assert result["member_errors"] == [round((1 - v) * 200) for v in result["member_final_val_accuracy"]]
    assert (tmp_path / "accuracy-errors.png").stat().st_size > 0

    # --resume reuses both recorded members (same commands) instead of training them again.
    models = sorted((tmp_path / "accuracy-model").glob("member-*/model.keras"))
    stamps = [p.stat().st_mtime_ns for p in models]
    again = accuracy.measure(SAMPLE, epochs=1, members=2, out=tmp_path, resume=True)
    assert [p.stat().st_mtime_ns for p in models] == stamps
    assert again["member_final_val_accuracy"] == result["member_final_val_accuracy"]
    assert again["ensemble_val_accuracy"] == result["ensemble_val_accuracy"]
    assert again["cpu_s"] >= result["cpu_s"] - 5  # recorded training time counted, not zero


@pytest.mark.process
@pytest.mark.slow
def test_accuracy_section_scores_on_the_hold_out_of_its_split_seed(tmp_path):
    import numpy as np

    from trial.train import split

    result = accuracy.measure(
        SAMPLE,
        epochs=1,
        members=1,
        out=tmp_path,
        split_seed=1,
        precision="bfloat16",
        flags=accuracy_recipe("--batch-size 32 --learning-rate 0.0007"),
    )
    assert result["split_seed"] == 1 and "--split-seed 1" in result["commands"][0]
    # --accuracy-flags reach the member: the hyperparameters it saved beside its model are the recipe's.
    hparams = json.loads((tmp_path / "accuracy-model" / "member-0" / "hparams.json").read_text())
    assert (hparams["batch_size"], hparams["learning_rate"]) == (32, 0.0007)
    assert result["flags"] == ["--batch-size", "32", "--learning-rate", "0.0007"]
    # --accuracy-precision reaches the member: the trial's first stderr line names the policy it set.
    assert result["precision"] == "bfloat16" and "--precision bfloat16" in result["commands"][0]
    assert "trial: precision mixed_bfloat16" in (tmp_path / "accuracy-member-0.log.err").read_text()
    # One member: the bench's own scoring must agree with what the trial measured on its hold-out,
    # which holds only if both drew the same rows.
    assert result["ensemble_val_accuracy"] == pytest.approx(result["member_final_val_accuracy"][0], abs=1e-6)
    rows = np.arange(2000)
    seed_1, seed_0 = split(rows, rows, 0.1, 1)[1], split(rows, rows, 0.1, 0)[1]  # the hold-outs
    assert seed_1 is not None and seed_0 is not None
    seed_1_rows, seed_0_rows = seed_1[0], seed_0[0]
    assert set(seed_1_rows) != set(seed_0_rows)
    assert {e["train_csv_line"] - 2 for e in result["errors"]} <= set(seed_1_rows.tolist())


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            "--seed 3",
            "--seed is set by the accuracy section itself (instead: members' seeds 0..N-1: --accuracy-members)",
        ),
        ("--epochs=4", "--epochs is set by the accuracy section itself (instead: --accuracy-epochs)"),
        ("--batch-size 0", "argument --batch-size: 0 is not a positive integer"),
        ("--optimizer lion", "argument --optimizer: invalid choice: 'lion'"),
        ("--bogus 1", "not a trial flag: --bogus"),
        ("--optimizer 'adam", "No closing quotation"),
    ],
)
def test_accuracy_flags_are_checked_before_any_member_trains(flags, message):
    with pytest.raises(SystemExit) as refused:
        accuracy_recipe(flags)
    assert str(refused.value).startswith("benchmark: --accuracy-flags: ") and message in str(refused.value)


@pytest.mark.parametrize("flag", [*RETRAIN_OWNED_FLAGS, *ENSEMBLE_FLAGS])
def test_a_recipe_may_not_set_a_flag_the_retrain_or_its_ensemble_sets(flag):
    """The section measures pipeline.submission.retrain's retrain: a recipe moving one of its flags would not be it."""
    with pytest.raises(SystemExit, match=f"--accuracy-flags: {flag} is set by the accuracy section itself"):
        accuracy_recipe(f"--batch-size 32 {flag}=1")


def test_every_flag_the_accuracy_section_owns_is_a_trial_flag():
    from trial.cli import build_parser

    trial_flags = {o for a in build_parser()._actions for o in a.option_strings}
    assert set(ACCURACY_OWNED_FLAGS) <= trial_flags
    assert set(INSTEAD) <= set(ACCURACY_OWNED_FLAGS), "a replacement named for a flag nobody refuses"


def test_accuracy_flags_become_trial_argv():
    assert accuracy_recipe("--batch-size 128 --learning-rate=0.0014") == [
        "--batch-size",
        "128",
        "--learning-rate=0.0014",
    ]
    assert accuracy_recipe("") == []


def test_a_tuned_experiments_best_trial_is_the_recipe_as_the_retrain_takes_it(tmp_path):
    """--accuracy-params: the members train the best trial's flags (its command with the best assignments, as
    `katib-digits train` renders it), less what the section sets itself: the data, the epochs, the hold-out's
    seed, the checkpoint folder on the Experiment's volume."""
    import yaml

    from bench.sections.accuracy import tuned_recipes
    from tests.conftest import REPO

    exp = yaml.safe_load((REPO / "experiments" / "asha-full.yaml").read_text())
    best = {
        "learning-rate": "0.0011",
        "lr-decay": "0.93",
        "batch-size": "64",
        "optimizer": "adamw",
        "conv-filters": "40",
        "dense-units": "300",
        "dropout": "0.35",
        "augment": "0.12",
        "arch": "pool",
        "epochs": "27",
    }
    exp["status"] = {
        "currentOptimalTrial": {
            "bestTrialName": "digits-asha-full-abc",
            "parameterAssignments": [{"name": k, "value": v} for k, v in best.items()],
            "observation": {"metrics": [{"name": "val_accuracy", "latest": "0.995", "max": "0.995", "min": "0.99"}]},
        }
    }
    params = tmp_path / "experiment.json"
    params.write_text(json.dumps(exp))
    [flags] = tuned_recipes(params)
    assert flags == [
        "--learning-rate=0.0011",
        "--lr-decay=0.93",
        "--batch-size=64",
        "--optimizer=adamw",
        "--conv-filters=40",
        "--dense-units=300",
        "--dropout=0.35",
        "--augment=0.12",
        "--arch=pool",
        "--threads=1",
    ]
    assert accuracy_recipe(" ".join(flags)) == flags  # nothing in it that the section refuses
    assert tuned_recipes(None) == [[]]


def test_a_missing_tuned_experiment_is_one_line_naming_the_flag(tmp_path):
    from bench.sections.accuracy import tuned_recipes

    with pytest.raises(SystemExit, match=r"^benchmark: --accuracy-params: .*nothing\.json"):
        tuned_recipes(tmp_path / "nothing.json")
    with pytest.raises(SystemExit, match=r"^benchmark: --accuracy-top-k: needs --accuracy-params"):
        tuned_recipes(None, 2)


def _trial(name: str, objective: str, state: str = "Succeeded", **params: str) -> dict:
    """A Katib Trial object as `kubectl get trials -o json` lists it."""
    return {
        "kind": "Trial",
        "metadata": {"name": name},
        "spec": {"parameterAssignments": [{"name": k.replace("_", "-"), "value": v} for k, v in params.items()]},
        "status": {
            "conditions": [{"type": "Running", "status": "False"}, {"type": state, "status": "True"}],
            "observation": {"metrics": [{"name": "val_accuracy", "latest": objective, "max": "0.999", "min": "0.1"}]},
        },
    }


def test_top_k_recipes_are_the_best_distinct_configurations_of_the_trials(tmp_path):
    """--accuracy-top-k K: the K best trials by the objective (its strategy: latest here), one per
    configuration: ASHA's rungs of one configuration (other epochs) count once, by their best-ranked trial."""
    import yaml

    from bench.sections.accuracy import tuned_recipes
    from tests.conftest import REPO

    exp = yaml.safe_load((REPO / "experiments" / "asha-full.yaml").read_text())

    def config(lr: str, epochs: str, arch: str = "strided") -> dict[str, str]:
        return {
            "learning_rate": lr,
            "lr_decay": "0.9",
            "batch_size": "64",
            "optimizer": "adam",
            "conv_filters": "32",
            "dense_units": "256",
            "dropout": "0.4",
            "augment": "0.1",
            "arch": arch,
            "epochs": epochs,
        }

    trials = [
        _trial("t-a3", "0.990", **config("0.001", "3")),
        _trial("t-b3", "0.991", **config("0.002", "3", "pool")),
        _trial("t-a9", "0.994", **config("0.001", "9")),  # t-a3 promoted: the same configuration
        _trial("t-c3", "0.985", **config("0.003", "3")),
        _trial("t-d", "unavailable", state="Failed", **config("0.004", "3")),
    ]
    exp["status"] = {
        "currentOptimalTrial": {
            "bestTrialName": "t-a9",
            "parameterAssignments": trials[2]["spec"]["parameterAssignments"],
            "observation": trials[2]["status"]["observation"],
        }
    }
    params = tmp_path / "experiment.json"
    params.write_text(json.dumps(exp))
    (tmp_path / "trials.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": trials}))

    recipes = tuned_recipes(params, 3)
    lrs = [next(f for f in r if f.startswith("--learning-rate=")) for r in recipes]
    assert lrs == ["--learning-rate=0.001", "--learning-rate=0.002", "--learning-rate=0.003"]
    assert "--arch=pool" in recipes[1]
    assert all(not f.startswith("--epochs") for r in recipes for f in r)  # the section sets the epochs
    assert tuned_recipes(params, 1) == recipes[:1]  # the best trial alone is the currentOptimalTrial
    # Three distinct configurations have an objective (the failed trial has none): a fourth is refused.
    with pytest.raises(SystemExit, match=r"^benchmark: --accuracy-params: .*trials\.json: 3 distinct .*top 4"):
        tuned_recipes(params, 4)
    (tmp_path / "trials.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"^benchmark: --accuracy-params: .*trials\.json: items: expected"):
        tuned_recipes(params, 2)


def test_member_k_trains_recipe_k_mod_top_k_with_seed_k_then_the_extra_flags(tmp_path):
    from bench.sections.accuracy import member_argv

    recipes = [["--arch=strided"], ["--arch=pool"]]
    argvs = [
        member_argv(tmp_path, k, 3, tmp_path / f"member-{k}", 27, None, [*recipes[k % 2], "--threads=1"])
        for k in range(3)
    ]
    assert [a[a.index("--seed") + 1] for a in argvs] == ["0", "1", "2"]
    assert [a[-2] for a in argvs] == ["--arch=strided", "--arch=pool", "--arch=strided"]
    assert all(a[-1] == "--threads=1" and a[a.index("--split-seed") + 1] == "3" for a in argvs)
    assert argvs[0][argvs[0].index("--epochs") + 1] == "27" and "--precision" not in argvs[0]
