"""The local dry-run end to end with the stand-in trial (tests/fake_trial.py)."""

from __future__ import annotations

import csv
import json
import re
import time

import pytest

from pipeline import lint
from pipeline.errors import UserError
from pipeline.katib.budget import resource_flags
from pipeline.katib.experiment import dump_yaml
from pipeline.local.controller import run_experiment
from pipeline.local.smoke import smoke_check
from tests.conftest import REPO, katib_digits
from tests.fake_trial import experiment


def run(tmp_path, exp, **kw):
    return run_experiment(exp, tmp_path / "out", {}, progress=False, report=False, **kw)


def states(status):
    s = status["status"]
    return {
        k: s[k]
        for k in (
            "trials",
            "trialsSucceeded",
            "trialsFailed",
            "trialsEarlyStopped",
            "trialMetricsUnavailable",
            "trialsKilled",
        )
    }


def condition(status):
    c = status["status"]["conditions"][-1]
    return c["type"], c["reason"]


def trial_rows(tmp_path) -> list[dict[str, str]]:
    """The run's trials.csv, one dict a trial."""
    with open(tmp_path / "out" / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.process
def test_max_trials_reached_and_katib_shape(tmp_path):
    status = run(tmp_path, experiment(max_trials=5, parallel=2, settings={"random_state": 1}))
    assert condition(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert states(status)["trialsSucceeded"] == 5
    best = status["status"]["currentOptimalTrial"]
    assert best["bestTrialName"].startswith("fake-") and len(best["bestTrialName"]) == len("fake-") + 8
    assert [a["name"] for a in best["parameterAssignments"]] == ["x", "y"]
    metrics = {m["name"]: m for m in best["observation"]["metrics"]}
    assert set(metrics) == {"accuracy", "loss"}
    assert all(isinstance(v, str) for m in metrics.values() for v in m.values())
    # the best trial's accuracy is the max of all trials' max accuracies
    rows = trial_rows(tmp_path)
    assert len(rows) == 5 and max(float(r["objective"]) for r in rows) == float(metrics["accuracy"]["max"])
    on_disk = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert on_disk["kind"] == "Experiment" and on_disk["spec"]["parallelTrialCount"] == 2
    assert on_disk["spec"]["objective"]["metricStrategies"][0] == {"name": "accuracy", "value": "max"}
    for row in rows:
        assert (tmp_path / "out" / "trials" / row["name"] / "trial.log").exists()


@pytest.mark.process
def test_goal_reached_is_inclusive(tmp_path):
    exp = experiment(max_trials=6, parallel=1, args=["--score=0.8", "--epochs=1"])
    exp["spec"]["objective"]["goal"] = 0.7  # accuracy = 0.8 - 0.1 = 0.7 on the only epoch
    status = run(tmp_path, exp)
    assert condition(status) == ("Succeeded", "ExperimentGoalReached")
    assert status["status"]["trials"] == 1


@pytest.mark.process
def test_failed_budget(tmp_path):
    status = run(tmp_path, experiment(max_trials=6, parallel=1, max_failed=2, args=["--mode=crash"]))
    assert condition(status) == ("Failed", "ExperimentFailed")
    assert states(status)["trialsFailed"] == 2
    assert status["status"]["currentOptimalTrial"]["bestTrialName"] == ""


@pytest.mark.process
def test_grid_exhausted_without_max_trial_count(tmp_path):
    params = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.3", "step": "0.1"}},
        {"name": "y", "parameterType": "categorical", "feasibleSpace": {"list": ["2", "3"]}},
    ]
    status = run(
        tmp_path, experiment(algorithm="grid", parameters=params, max_trials=None, parallel=2, args=["--epochs=1"])
    )
    assert condition(status) == ("Succeeded", "ExperimentSuggestionEndReached")
    seen = {(a["x"], a["y"]) for a in trial_rows(tmp_path)}
    assert seen == {(x, y) for x in ("0.1", "0.2", "0.30000000000000004") for y in ("2", "3")}


def test_grid_larger_budget_than_grid_is_refused(tmp_path):
    params = [{"name": "x", "parameterType": "categorical", "feasibleSpace": {"list": ["0.1", "0.2"]}}]
    with pytest.raises(UserError, match="Max Trial Count: 3 > all possible search combinations: 2"):
        run(tmp_path, experiment(algorithm="grid", parameters=params, max_trials=3))


@pytest.mark.process
def test_medianstop_end_to_end(tmp_path):
    # Runs score 0.9, 0.95, 0.2, 0.99 (reports: score - 0.1/epoch). Rule after one success: mean of
    # the first 2 reports of run 1 = 0.825. Run 2 (best 0.9 at report 2) goes on; rule for run 3:
    # mean(0.825, 0.875) = 0.85 > 0.15 -> stopped at its 2nd report. Run 4 never starts: as on Katib v0.19,
    # the stopped trial never gets its observation and holds the one parallel slot (tests/box shows it).
    # 0.5 s per epoch: the stopped run must still be running when the controller reads its 2nd report,
    # also on a loaded CI machine (with 0.05 s it sometimes finished first).
    exp = experiment(
        max_trials=4,
        parallel=1,
        args=["--epochs=4", "--scores=0.9,0.95,0.2,0.99", f"--counter={tmp_path / 'n'}", "--sleep=0.5"],
        early_stopping={
            "algorithmName": "medianstop",
            "algorithmSettings": [{"name": "min_trials_required", "value": "1"}, {"name": "start_step", "value": "2"}],
        },
    )
    status = run(tmp_path, exp)
    assert states(status)["trials"] == 3
    assert states(status)["trialsSucceeded"] == 2 and states(status)["trialsEarlyStopped"] == 1
    assert condition(status) == ("Running", "ExperimentRunning")
    assert "hold all 1 parallel slot(s)" in status["status"]["conditions"][-1]["message"]
    rows = {r["state"]: r for r in trial_rows(tmp_path)}
    stopped_log = (tmp_path / "out" / "trials" / rows["EarlyStopped"]["name"] / "trial.log").read_text()
    assert "epoch=2" in stopped_log and "epoch=4" not in stopped_log
    assert rows["EarlyStopped"]["reason"] == "TrialEarlyStopped"
    assert rows["EarlyStopped"]["objective"] == "unavailable"  # Katib never reads its observation


@pytest.mark.process
@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_file_collector(tmp_path, fmt):
    collector = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File", "format": fmt}},
    }
    args = ["--file=/katib/metrics.log"] + (["--mode=json"] if fmt == "JSON" else [])
    status = run(tmp_path, experiment(max_trials=2, parallel=2, collector=collector, args=args))
    assert states(status)["trialsSucceeded"] == 2
    name = status["status"]["currentOptimalTrial"]["bestTrialName"]
    assert (tmp_path / "out" / "trials" / name / "metrics" / "metrics.log").exists()


@pytest.mark.process
def test_custom_filter(tmp_path):
    collector = {"collector": {"kind": "StdOut"}, "source": {"filter": {"metricsFormat": [r"(accuracy)=(\d+\.\d+)"]}}}
    status = run(tmp_path, experiment(max_trials=1, parallel=1, collector=collector, args=["--epochs=1"]))
    names = [m["name"] for m in status["status"]["currentOptimalTrial"]["observation"]["metrics"]]
    assert states(status)["trialsSucceeded"] == 1 and names == ["accuracy", "loss"]
    loss = status["status"]["currentOptimalTrial"]["observation"]["metrics"][1]
    assert loss["latest"] == "unavailable"  # the filter only captures accuracy


@pytest.mark.process
def test_mount_maps_container_paths(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    exp = experiment(max_trials=1, parallel=1, args=["--file=/data/m.log", "--epochs=1"])
    c = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    c["volumeMounts"] = [{"name": "d", "mountPath": "/data"}]
    status = run_experiment(exp, tmp_path / "out", {"/data": str(data)}, progress=False, report=False)
    assert "accuracy=" in (data / "m.log").read_text()
    assert condition(status)[0] == "Failed" or states(status)["trialMetricsUnavailable"] == 1


@pytest.mark.process
def test_trial_args_and_overrides(tmp_path):
    status = run(
        tmp_path,
        experiment(max_trials=8, parallel=2),
        max_trial_count=2,
        parallel_trial_count=1,
        trial_args=["--epochs=1"],
    )
    assert status["spec"]["maxTrialCount"] == 2 and status["spec"]["parallelTrialCount"] == 1
    log = next((tmp_path / "out" / "trials").iterdir()) / "trial.log"
    assert log.read_text().count("epoch=") == 1


HB_PARAMS = [
    {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
    {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}},
]
HB_SETTINGS = {"r_l": 2, "eta": 2, "resource_name": "epochs", "random_state": 3}


@pytest.mark.process
def test_hyperband_runs_as_far_as_katib_does(tmp_path):
    """maxTrialCount 3 with 2 in parallel: 2 configs at 1 epoch, then (one trial left to start, the only
    request Katib v0.19's service can satisfy) the better one at 2 epochs; ends at maxTrialCount."""
    exp = experiment(
        algorithm="hyperband", parameters=HB_PARAMS, max_trials=3, parallel=2, max_failed=None, settings=HB_SETTINGS
    )
    status = run(tmp_path, exp)
    assert condition(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    rows = trial_rows(tmp_path)
    assert [int(r["epochs"]) for r in rows] == [1, 1, 2]
    assert all(re.fullmatch(r"fake-[bcdfghjklmnpqrstvwxz2456789]{8}", r["name"]) for r in rows)  # item 9
    first = sorted(rows[:2], key=lambda r: float(r["objective"]))[-1]
    assert rows[2]["x"] == first["x"]


@pytest.mark.process
def test_hyperband_stops_where_katib_would_hang(tmp_path, capsys):
    """Katib v0.19's hyperband hang: with no maxTrialCount, after the first rung the controller asks
    for 2, the service answers 1, and Katib retries forever; the local run stops there, Running, and says why."""
    exp = experiment(
        algorithm="hyperband", parameters=HB_PARAMS, max_trials=None, parallel=2, max_failed=None, settings=HB_SETTINGS
    )
    status = run(tmp_path, exp)
    assert status["status"]["trials"] == 2
    last = status["status"]["conditions"][-1]
    assert (last["type"], last["status"]) == ("Running", "True")
    assert "would stay Running here forever" in last["message"] and "kubeflow/katib#1168" in last["message"]
    assert "asked the hyperband service for 2" in last["message"]


@pytest.mark.process
def test_resume_keeps_finished_trials(tmp_path):
    exp = experiment(max_trials=3, parallel=1, args=["--epochs=1"])
    exp["spec"]["resumePolicy"] = "LongRunning"  # Katib restarts a finished Experiment only then
    first = run(tmp_path, exp, max_trial_count=2)
    assert first["status"]["trials"] == 2
    second = run(tmp_path, exp)
    assert second["status"]["trials"] == 3
    assert set(first["status"]["succeededTrialList"]) < set(second["status"]["succeededTrialList"])


@pytest.mark.process
def test_raised_budget_of_a_finished_never_experiment_is_refused(tmp_path):
    """Katib's webhook refuses to restart a completed `resumePolicy: Never` Experiment."""
    exp = experiment(max_trials=3, parallel=1, args=["--epochs=1"])
    first = run(tmp_path, exp, max_trial_count=1)
    assert first["status"]["trials"] == 1
    with pytest.raises(UserError, match="resumePolicy is LongRunning or FromVolume"):
        run(tmp_path, exp)
    time.sleep(1.1)  # the times below are whole seconds
    again = run(tmp_path, exp, max_trial_count=1)  # the same spec: nothing to restart, same result
    assert again["status"]["trials"] == 1
    # It ended once: running it again does not move its completionTime (nor the conditions' times).
    assert again["status"]["completionTime"] == first["status"]["completionTime"]
    assert again["status"]["conditions"] == first["status"]["conditions"]


@pytest.mark.process
def test_smoke_check_passes_and_fails(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(dump_yaml(experiment(args=["--epochs=1"])))
    smoke_check(str(good), {}, [])
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml(experiment(args=["--metric=acc"])))
    with pytest.raises(UserError, match="objective metric 'accuracy' was never collected"):
        smoke_check(str(bad), {}, [])
    nan = tmp_path / "nan.yaml"
    nan.write_text(dump_yaml(experiment(args=["--mode=nan"])))
    with pytest.raises(UserError, match="not a number"):
        smoke_check(str(nan), {}, [])


@pytest.mark.process
def test_cli_exit_codes(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text(dump_yaml(experiment(max_trials=1, parallel=1, max_failed=1, args=["--epochs=1"])))
    r = katib_digits("tune", str(ok), "--out", str(tmp_path / "a"), "--no-progress", "--no-report")
    assert r.returncode == 0, r.stderr
    assert "best trial fake-" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml(experiment(max_trials=2, parallel=1, max_failed=1, args=["--mode=crash"])))
    r = katib_digits("tune", str(bad), "--out", str(tmp_path / "b"), "--no-progress", "--no-report")
    assert r.returncode == 1 and "Failed" in r.stderr
    r = katib_digits("tune", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "file not found" in r.stderr


SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_experiment_runs_one_real_trial(tmp_path, path):
    """The real `python -m trial` on the embedded sample, one tiny trial per shipped Experiment (hyperband's
    and asha's epochs are their own: the first rung's)."""
    own_epochs = "--epochs" in resource_flags(lint.load(path))
    status = run_experiment(
        str(path),
        tmp_path / "out",
        {"/data": str(REPO / "data" / "sample")},
        max_trial_count=1,
        trial_args=["--max-rows=200", *([] if own_epochs else ["--epochs=1"])],
        progress=False,
        report=False,
    )
    s = status["status"]
    assert s["trials"] == 1 and s["trialsSucceeded"] == 1, (tmp_path / "out" / "trials.csv").read_text()
    objective = status["spec"]["objective"]["objectiveMetricName"]
    metrics = {m["name"]: m for m in s["currentOptimalTrial"]["observation"]["metrics"]}
    assert 0.0 <= float(metrics[objective]["latest"]) <= 1.0 or objective.endswith("loss")


@pytest.mark.process
def test_trials_running_at_the_end_are_not_killed(tmp_path):
    """Katib does not stop the trials still running when the Experiment ends; they finish and
    are recorded with their own outcome."""
    script = tmp_path / "first_fails.py"
    script.write_text(
        "import os, sys, time\n"
        f"lock = {str(tmp_path / 'lock')!r}\n"
        "try:\n"
        "    os.close(os.open(lock, os.O_CREAT | os.O_EXCL))\n"
        "    sys.exit(1)\n"
        "except FileExistsError:\n"
        "    time.sleep(1.5)\n"
        "    print('accuracy=0.5', flush=True)\n"
    )
    exp = experiment(max_trials=4, parallel=2, max_failed=1)
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", str(script), "--x=${trialParameters.x}", "--y=${trialParameters.y}"]
    status = run(tmp_path, exp)
    assert condition(status) == ("Failed", "ExperimentFailed")
    assert states(status)["trialsKilled"] == 0 and states(status)["trialsSucceeded"] == 1
    assert status["status"]["currentOptimalTrial"]["bestTrialName"] == status["status"]["succeededTrialList"][0]


def test_a_trial_arg_that_would_override_the_resource_parameter_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"--trial-arg=--epochs=1 would append --epochs=1 .* drop it for hyperband"):
        run_experiment(REPO / "experiments" / "hyperband.yaml", tmp_path / "out", trial_args=["--epochs=1"])
    assert not (tmp_path / "out").exists()  # refused before anything ran
