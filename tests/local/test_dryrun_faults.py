"""Faults: crashing, hanging, silent and nan trials; signals; SIGKILL; two runs on one storage."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.katib.experiment import dump_yaml
from pipeline.local.controller import run_experiment
from tests.conftest import REPO
from tests.fake_trial import experiment


def run(tmp_path, exp, **kw):
    return run_experiment(exp, tmp_path / "out", {}, progress=False, report=False, **kw)


def rows(tmp_path):
    return list(csv.DictReader(open(tmp_path / "out" / "trials.csv")))


@pytest.mark.process
@pytest.mark.parametrize(
    "args,job,state,reason",
    [
        (["--mode=crash"], {}, "Failed", "BackoffLimitExceeded"),
        (["--mode=hang"], {"activeDeadlineSeconds": 1}, "Failed", "DeadlineExceeded"),
        (["--mode=silent"], {}, "MetricsUnavailable", "MetricsUnavailable. Job reason: CompletionsReached"),
    ],
)
def test_bad_trials_count_against_the_failed_budget(tmp_path, args, job, state, reason):
    status = run(tmp_path, experiment(max_trials=4, parallel=1, max_failed=2, args=args, job_spec=job))
    cond = status["status"]["conditions"][-1]
    assert (cond["type"], cond["reason"]) == ("Failed", "ExperimentFailed")
    assert cond["message"] == "Experiment has failed because max failed count has reached"
    got = rows(tmp_path)
    assert len(got) == 2 and {r["state"] for r in got} == {state}
    assert all(reason in r["reason"] for r in got)


@pytest.mark.process
def test_failures_below_the_budget_let_the_experiment_go_on(tmp_path):
    counter = tmp_path / "n"
    exp = experiment(
        max_trials=3, parallel=1, max_failed=2, args=["--epochs=1", "--scores=0.5,0.6,0.7", f"--counter={counter}"]
    )
    # the first run crashes (no metrics), the others succeed
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append(
        f"--crash-once={tmp_path / 'crashed'}"
    )
    status = run(tmp_path, exp)
    assert status["status"]["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert [r["state"] for r in rows(tmp_path)] == ["Failed", "Succeeded", "Succeeded"]


@pytest.mark.process
def test_backoff_limit_retries_a_crashing_pod(tmp_path):
    exp = experiment(
        max_trials=1,
        parallel=1,
        max_failed=1,
        job_spec={"backoffLimit": 1},
        args=["--epochs=1", f"--crash-once={tmp_path / 'crashed'}"],
    )
    status = run(tmp_path, exp)
    assert status["status"]["trialsSucceeded"] == 1
    assert rows(tmp_path)[0]["attempts"] == "2"


@pytest.mark.process
def test_nan_objective_is_recorded_as_katib_does(tmp_path):
    # The default filter reads `accuracy=nan` as the value "": Katib marks the trial Succeeded with a
    # non-numeric objective, and its best-trial rule then picks that trial. We reproduce it and warn.
    status = run(tmp_path, experiment(max_trials=1, parallel=1, max_failed=1, args=["--mode=nan", "--epochs=1"]))
    assert status["status"]["trialsSucceeded"] == 1
    best = status["status"]["currentOptimalTrial"]
    acc = best["observation"]["metrics"][0]
    assert acc == {"name": "accuracy", "min": "unavailable", "max": "unavailable", "latest": ""}


def cli(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "tune", *args, "--no-progress", "--no-report"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for(pred, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def slow_experiment(tmp_path, name="slow", sleep=0.5):
    # Slow enough that a loaded CI machine still catches the second trial running.
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        dump_yaml(
            experiment(
                name=name,
                max_trials=2,
                parallel=1,
                max_failed=1,
                algorithm="multivariate-tpe",
                args=["--epochs=6", f"--sleep={sleep}", f"--pidfile={tmp_path / 'pids'}"],
            )
        )
    )
    return path


@pytest.mark.process
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_trials_keeps_finished_and_resumes(tmp_path, sig, code):
    path, out = slow_experiment(tmp_path), tmp_path / "out"
    proc = cli([str(path), "--out", str(out)])
    assert wait_for(lambda: len(pids(tmp_path / "pids")) >= 2), proc.communicate()  # 1st done, 2nd running
    running = pids(tmp_path / "pids")[-1]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert wait_for(lambda: not alive(running), 10), "trial process left running"
    status = json.loads((out / "experiment.json").read_text())
    assert status["status"]["trialsSucceeded"] == 1 and status["status"]["conditions"][-1]["type"] == "Running"
    kept = status["status"]["succeededTrialList"]
    proc = cli([str(path), "--out", str(out)])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = json.loads((out / "experiment.json").read_text())
    assert status["status"]["trials"] == 2 and status["status"]["trialsSucceeded"] == 2
    assert set(kept) <= set(status["status"]["succeededTrialList"])
    assert not any(alive(p) for p in pids(tmp_path / "pids"))


@pytest.mark.process
def test_sigkill_loses_only_running_trials(tmp_path):
    path, out = slow_experiment(tmp_path), tmp_path / "out"
    proc = cli([str(path), "--out", str(out)])
    assert wait_for(lambda: len(pids(tmp_path / "pids")) >= 2)
    running = pids(tmp_path / "pids")[-1]
    proc.kill()
    proc.communicate()
    assert wait_for(lambda: not alive(running), 10), "trial outlived a SIGKILLed dry-run"
    proc = cli([str(path), "--out", str(out)])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = json.loads((out / "experiment.json").read_text())
    assert status["status"]["trials"] == 2 and status["status"]["trialsSucceeded"] == 2


@pytest.mark.process
def test_second_run_on_the_same_storage_refuses(tmp_path):
    path = slow_experiment(tmp_path, sleep=5)  # the first must outlive the second's start-up, however loaded
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = cli([str(path), "--out", str(tmp_path / "a"), "--storage", storage])
    try:
        assert wait_for(lambda: len(pids(tmp_path / "pids")) >= 1)
        second = cli([str(path), "--out", str(tmp_path / "b"), "--storage", storage])
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "being run by another dry-run" in err
        assert first.poll() is None  # the first one is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143


@pytest.mark.process
def test_library_caller_stops_on_sigterm_instead_of_taking_a_half_run(tmp_path):
    """run_experiment (used by the pipeline's tune step) writes its outputs, then exits 143."""
    path, out = slow_experiment(tmp_path), tmp_path / "out"
    script = (
        "import sys; from pipeline.local.controller import run_experiment; "
        f"run_experiment({str(path)!r}, {str(out)!r}, {{}}, progress=False, report=False); "
        "print('returned a result'); sys.exit(0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(pids(tmp_path / "pids")) >= 1)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "returned a result" not in stdout
    status = json.loads((out / "experiment.json").read_text())["status"]
    assert status["conditions"][-1]["type"] == "Running"  # consistent, resumable, and not mistaken for done


@pytest.mark.process
def test_only_the_last_pod_attempt_reaches_the_observation(tmp_path):
    """A failed pod's sidecar exits before reporting (no "completed" marker), and the retry
    is a new pod with a fresh log: Katib's observation holds the last attempt's lines only."""
    script = tmp_path / "fails_then_works.py"
    script.write_text(
        "import os, sys\n"
        f"mark = {str(tmp_path / 'once')!r}\n"
        "if not os.path.exists(mark):\n"
        "    open(mark, 'w').close()\n"
        "    print('accuracy=0.99 loss=0.01', flush=True)\n"
        "    sys.exit(1)\n"
        "print('accuracy=0.5 loss=0.5', flush=True)\n"
    )
    exp = experiment(max_trials=1, parallel=1, max_failed=1, job_spec={"backoffLimit": 1})
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", str(script), "--x=${trialParameters.x}", "--y=${trialParameters.y}"]
    status = run(tmp_path, exp)
    acc = status["status"]["currentOptimalTrial"]["observation"]["metrics"][0]
    assert acc == {"name": "accuracy", "min": "0.5", "max": "0.5", "latest": "0.5"}
    assert rows(tmp_path)[0]["attempts"] == "2"
