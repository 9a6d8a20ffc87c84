"""The local tune step kept across pipeline runs (steps.tune with state_dir): an interrupted tune resumes with
its finished trials kept, an ended one is not rerun, and other inputs (spec, budget flags, data) get a tune of
their own. The trials are tests/fake_trial.py, so no TensorFlow runs here."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.katib.budget import with_budget
from pipeline.katib.experiment import dump_yaml
from pipeline.workflow import steps
from tests.conftest import REPO
from tests.fake_trial import experiment


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for(pred, timeout=60.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def write(path: Path, exp: dict) -> Path:
    path.write_text(dump_yaml(exp))
    return path


def train_file(folder: Path, text: str = "label,pixel0\n1,0\n") -> Path:
    """A stand-in for the prepared train.csv: fake_trial ignores --data; only its bytes key the tune."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(text)
    return folder / "train.csv"


def tune(path: Path, out_dir: Path, train: Path, state: Path) -> dict:
    return steps.tune(steps.read_experiment(str(path)), "optuna", out_dir, train, state_dir=state, progress=False)


def said(capsys) -> str:
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("tune: ")]
    return line


def test_the_key_is_the_spec_budget_flags_and_data_content(tmp_path):
    exp = steps.read_experiment(str(write(tmp_path / "e.yaml", experiment(max_trials=2))))
    key = steps.tune_key(exp, ["--max-rows=300"], "aa")
    folder = steps.kept_tune_dir(tmp_path, key)
    assert folder.parent == tmp_path and folder.name.startswith("fake-")
    assert steps.kept_tune_dir(tmp_path, steps.tune_key(exp, ["--max-rows=300"], "aa")) == folder
    others = [
        steps.tune_key(with_budget(exp, max_trial_count=3).experiment, ["--max-rows=300"], "aa"),
        steps.tune_key(exp, ["--max-rows=200"], "aa"),
        steps.tune_key(exp, ["--max-rows=300"], "bb"),
    ]
    assert len({steps.kept_tune_dir(tmp_path, k) for k in others} | {folder}) == 4


@pytest.mark.process
def test_an_interrupted_tune_resumes_keeping_its_trials_and_an_ended_one_is_not_rerun(tmp_path, capsys):
    spec = experiment(
        name="slow", max_trials=2, parallel=1, max_failed=1, algorithm="multivariate-tpe",
        args=["--epochs=6", "--sleep=0.3", f"--pidfile={tmp_path / 'pids'}"],
    )  # fmt: skip
    path, state = write(tmp_path / "slow.yaml", spec), tmp_path / "kfp-local" / "tune-state"
    first_out = tmp_path / "kfp-local" / "run-1" / "tune" / "tuned" / "dryrun"
    train = train_file(tmp_path / "run-1")
    script = (
        "from pathlib import Path; from pipeline.workflow import steps; "
        f"steps.tune(steps.read_experiment({str(path)!r}), 'optuna', Path({str(first_out)!r}), "
        f"Path({str(train)!r}), state_dir=Path({str(state)!r}), progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(pids(tmp_path / "pids")) >= 2), proc.communicate()  # 1st done, 2nd running
    proc.send_signal(signal.SIGINT)  # Ctrl-C on `pipeline run --local` reaches the step's dry-run too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (folder,) = state.iterdir()
    assert "tune: a new tune in " + str(folder) in err and first_out.resolve() == folder.resolve()
    kept = json.loads((folder / "experiment.json").read_text())["status"]["succeededTrialList"]
    assert len(kept) == 1

    # The next pipeline run: its own artifact folder and its own copy of the same data.
    second_out = tmp_path / "kfp-local" / "run-2" / "tune" / "tuned" / "dryrun"
    final = tune(path, second_out, train_file(tmp_path / "run-2"), state)
    assert said(capsys) == f"tune: resuming the tune in {folder}: 1 trials kept, interrupted ones run again"
    assert second_out.resolve() == folder.resolve() and list(state.iterdir()) == [folder]
    assert final["status"]["trialsSucceeded"] == 2 and set(kept) < set(final["status"]["succeededTrialList"])
    assert len(pids(tmp_path / "pids")) == 3  # the finished trial did not train again; the interrupted one did

    again = tune(path, tmp_path / "run-3" / "dryrun", train, state)
    assert (
        said(capsys) == f"tune: the tune in {folder} already ended (ExperimentMaxTrialsReached): 2 trials, none rerun"
    )
    assert again["status"]["succeededTrialList"] == final["status"]["succeededTrialList"]
    assert again["status"]["completionTime"] == final["status"]["completionTime"]
    assert len(pids(tmp_path / "pids")) == 3  # no trial ran

    other = tune(path, tmp_path / "run-4" / "dryrun", train_file(tmp_path / "run-4", "label,pixel0\n2,0\n"), state)
    line = said(capsys)
    (new,) = set(state.iterdir()) - {folder}
    assert line == (
        f"tune: a new tune in {new}; 1 kept tune(s) of slow with other inputs are not resumed "
        f"(the newest, {folder.name}, differs in its training data)"
    )
    assert not set(other["status"]["succeededTrialList"]) & set(final["status"]["succeededTrialList"])
    assert len(pids(tmp_path / "pids")) == 5  # other data: every trial trained anew


@pytest.mark.process
def test_a_kept_tune_that_failed_says_how_to_start_over(tmp_path, capsys):
    path = write(tmp_path / "e.yaml", experiment(max_trials=1, parallel=1, max_failed=0, args=["--mode=crash"]))
    state, train = tmp_path / "state", train_file(tmp_path)
    for attempt, note in enumerate(["a new tune in ", "already ended (ExperimentFailed): 1 trials, none rerun"]):
        with pytest.raises(UserError, match=r"Failed .*--fresh starts it over"):
            tune(path, tmp_path / f"run-{attempt}" / "dryrun", train, state)
        assert note in said(capsys)
    shutil.rmtree(state)  # what --fresh does
    with pytest.raises(UserError):
        tune(path, tmp_path / "run-3" / "dryrun", train, state)
    assert said(capsys).startswith("tune: a new tune in ")
