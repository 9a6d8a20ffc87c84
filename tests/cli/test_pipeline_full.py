"""`pipeline run --local --full`: the whole job at full scale. What the preset resolves to (without
training anything: the local run is replaced by a recorder), an explicit flag winning over it, the refusals
(the embedded sample, --host), and the ASHA checkpoint volume the pipeline's tune step maps under its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import pipeline as pipeline_cli
from pipeline.katib.render import trial_argv
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS
from pipeline.workflow import steps
from pipeline.workflow.definition import DEFAULT_EXPERIMENT, Budget, pipeline_arguments
from pipeline.workflow.local_run import LOCAL_BUDGET, local_budget
from tests.conftest import REPO, SAMPLE, Ran, katib_digits

FULL = REPO / pipeline_cli.FULL_EXPERIMENT
FULL_SPEC = yaml.safe_load(FULL.read_text())["spec"]


@pytest.fixture
def recorded(monkeypatch) -> list[dict[str, Any]]:
    """`run_local` and `submit` replaced by recorders: what the command would have run, nothing run."""
    calls: list[dict[str, Any]] = []

    def fake_run_local(data_dir, experiment, out, budget, image=None, fresh=False):
        calls.append(
            {
                "data_dir": data_dir,
                "experiment": experiment,
                "out": out,
                "budget": budget,
                "image": image,
                "fresh": fresh,
            }
        )
        return {
            "best_trial": "t",
            "objective_metric": "val_accuracy",
            "objective": 0.5,
            "assignments": {},
            "submitted": False,
            "threshold": None,
            "summary": str(Path(out) / "summary.json"),
        }

    def fake_submit(host, arguments, *args, **kwargs):
        calls.append({"host": host, "arguments": arguments})
        return "submitted"

    monkeypatch.setattr(pipeline_cli, "run_local", fake_run_local)
    monkeypatch.setattr(pipeline_cli, "submit", fake_submit)
    return calls


def one_error_line(proc: Ran) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("katib-digits: error: "), proc.stderr
    return lines[0]


def competition_like_folder(tmp_path: Path) -> str:
    data = tmp_path / "digit-recognizer"  # never read: run_local is a recorder here
    data.mkdir()
    return str(data)


def test_full_sets_the_full_experiment_and_every_budget_to_its_own(tmp_path, recorded):
    data = competition_like_folder(tmp_path)
    proc = katib_digits("pipeline", "run", "--local", "--full", "--data", data, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded
    assert call["experiment"] == "experiments/asha-full.yaml" and call["data_dir"] == data
    budget = call["budget"]
    counts = (budget.max_trial_count, budget.parallel_trial_count, budget.trial_max_rows, budget.trial_epochs)
    assert counts == (0, 0, 0, 0)  # 0: the Experiment's trial counts, every row, the template's epochs
    assert (budget.retrain_epochs, budget.retrain_ensemble) == (RETRAIN_EPOCHS, RETRAIN_ENSEMBLE)
    assert (
        budget.retrain_epochs != LOCAL_BUDGET.retrain_epochs
        and budget.retrain_ensemble != LOCAL_BUDGET.retrain_ensemble
    )
    assert budget == Budget()  # the same as a server run's: the Experiment's and the retrain's own
    assert "pipeline run --full: experiments/asha-full.yaml" in proc.stdout and "hours" in proc.stdout


def test_the_preset_passes_the_local_runs_checks_and_keeps_the_experiments_budget(tmp_path, capsys):
    """What run_local does with the preset before any step: the epochs stay the template's (asha's
    rungs), the budget rule accepts it, and with 0s the Experiment keeps its own trial counts."""
    from pipeline.katib.budget import with_budget

    data, experiment, budget = pipeline_cli.local_settings(True, str(tmp_path), None)
    exp = steps.read_experiment(experiment)
    assert local_budget(budget, exp) == budget and "not applied" not in capsys.readouterr().out
    arguments = pipeline_arguments(data, experiment, "optuna", budget, export_dir="")
    assert {k: arguments[k] for k in ("max_trial_count", "parallel_trial_count", "trial_max_rows", "trial_epochs")} == {
        "max_trial_count": 0,
        "parallel_trial_count": 0,
        "trial_max_rows": 0,
        "trial_epochs": 0,
    }
    kept = with_budget(exp, budget.max_trial_count or None, budget.parallel_trial_count or None).experiment
    assert (kept.max_trial_count, kept.parallel_trial_count) == (
        FULL_SPEC["maxTrialCount"],
        FULL_SPEC["parallelTrialCount"],
    )
    assert budget.trial_epochs is not None
    assert steps.trial_budget_args(budget.trial_max_rows, budget.trial_epochs) == []  # nothing appended


def test_an_explicit_flag_wins_over_the_preset(tmp_path, recorded):
    data = competition_like_folder(tmp_path)
    proc = katib_digits(
        "pipeline", "run", "--local", "--full", "--data", data, "--ensemble", "1", "--max-trials", "6",
        "--experiment", "experiments/asha.yaml", "--out", tmp_path / "out",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded
    assert call["experiment"] == "experiments/asha.yaml"
    budget = call["budget"]
    assert (budget.retrain_ensemble, budget.max_trial_count) == (1, 6)
    # the flags not given keep the preset's values, not the local ones
    assert (budget.parallel_trial_count, budget.trial_max_rows, budget.retrain_epochs) == (0, 0, RETRAIN_EPOCHS)


@pytest.mark.parametrize("flags, fresh", [([], False), (["--fresh"], True)])
def test_a_rerun_resumes_the_kept_tune_unless_fresh(tmp_path, recorded, flags, fresh):
    data = competition_like_folder(tmp_path)
    proc = katib_digits("pipeline", "run", "--local", "--full", "--data", data, "--out", tmp_path / "out", *flags)
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded
    assert call["fresh"] is fresh


def test_without_full_the_local_defaults_are_unchanged(tmp_path, recorded):
    proc = katib_digits("pipeline", "run", "--local", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded
    assert (call["data_dir"], call["experiment"], call["budget"]) == ("data/sample", DEFAULT_EXPERIMENT, LOCAL_BUDGET)
    assert "--full" not in proc.stdout


@pytest.mark.parametrize("data", [None, "data/sample", str(SAMPLE)])
def test_full_on_the_embedded_sample_is_refused_naming_data(tmp_path, recorded, data):
    argv = ["pipeline", "run", "--local", "--full", "--out", tmp_path / "out"] + (["--data", data] if data else [])
    line = one_error_line(katib_digits(*argv))
    assert "--full" in line and "--data" in line and "data/sample" in line
    assert recorded == [] and not (tmp_path / "out").exists()


def test_full_with_host_is_refused_in_one_line(tmp_path, recorded):
    line = one_error_line(katib_digits("pipeline", "run", "--host", "http://127.0.0.1:9", "--full"))
    assert "--full is for --local" in line and "--experiment experiments/asha-full.yaml" in line
    assert recorded == []  # nothing submitted


def test_a_host_run_without_experiment_still_sends_the_default_one(recorded):
    proc = katib_digits("pipeline", "run", "--host", "http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded
    sent = json.loads(call["arguments"]["experiment"])
    assert sent["metadata"]["annotations"][steps.SOURCE_ANNOTATION] == DEFAULT_EXPERIMENT
    assert call["arguments"]["retrain_ensemble"] == RETRAIN_ENSEMBLE


def test_the_tune_step_gives_ashas_checkpoints_a_folder_under_its_outputs(tmp_path, monkeypatch):
    """The pipeline's tune step (the body of the kfp component, as a local run calls it: its dryrun folder
    under --out/kfp-local/<run>/tune/tuned/ a link to the tune kept in --out/kfp-local/tune-state/) maps the
    Experiment's writable /checkpoints mount to a folder of its own there, kept for a resumed run, and a
    promoted trial (same parameters, more epochs) is pointed at the same checkpoints."""
    from pipeline.local import controller

    seen: dict[str, Any] = {}

    def fake_run_experiment(experiment, out_dir, mounts=None, trial_args=(), progress=True, **_):
        dry = controller.DryRun(
            experiment,
            controller.LocalOptions(out=Path(out_dir), mounts=dict(mounts or {}), trial_args=tuple(trial_args)),
        )
        seen.update(dry=dry, experiment=experiment)
        return {"status": {"conditions": []}}

    monkeypatch.setattr(controller, "run_experiment", fake_run_experiment)
    out_dir = tmp_path / "out" / "kfp-local" / "run" / "tune" / "tuned" / "dryrun"
    train_file = tmp_path / "train.csv.gz"
    state = tmp_path / "out" / "kfp-local" / "tune-state"
    full = steps.read_experiment(str(FULL))
    steps.tune(full, "optuna", out_dir, train_file, progress=False, state_dir=state, data_sha256="0" * 64)

    dry = seen["dry"]
    (kept,) = state.iterdir()
    assert out_dir.resolve() == kept.resolve() and kept.name.startswith("digits-asha-full-")
    checkpoints = kept / "volumes" / "checkpoints"
    assert dry.mounts.folders["/checkpoints"] == str(checkpoints.resolve()) and checkpoints.is_dir()
    # the data volume is the prepared file's folder: nothing is left unmapped, so no warning says so
    assert Path(dry.mounts.folders["/data"]) == tmp_path.resolve() and dry.mounts.unmapped == []
    exp = seen["experiment"]
    assert exp.max_trial_count == FULL_SPEC["maxTrialCount"]  # the budget of 0s kept the Experiment's

    params = {p.name: str(p.choices[0] if p.choices else p.low) for p in exp.parameters}
    argvs = [
        trial_argv(exp, {**params, "epochs": str(epochs)}, dry.algorithm.style, "t", dry.mounts.map_paths)
        + list(dry.options.trial_args)
        for epochs in (3, 9)
    ]
    dirs = [[a for a in argv if a.startswith("--checkpoint-dir=")] for argv in argvs]
    assert dirs[0] == dirs[1] == [f"--checkpoint-dir={checkpoints.resolve() / 'digits-asha-full'}"]
    assert [a for a in argvs[0] if a.startswith("--data=")][-1] == f"--data={train_file}"  # the prepared rows win
