"""`katib-digits tune` with algorithmName asha: the dry-run drives the same AshaService class
the cluster runs, with Katib's request bookkeeping, and launches what it answers; first with
the stand-in trial (fast), then `experiments/asha.yaml` with the real trial (slow)."""

from __future__ import annotations

import pytest

from pipeline.katib.experiment import load_experiment
from pipeline.local.controller import dry_run
from pipeline.suggestion.asha import config_key
from tests.conftest import REPO
from tests.fake_trial import experiment

pytestmark = pytest.mark.process
EPOCHS = {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}}


def ladders(dry) -> dict[str, list[int]]:
    """Each configuration's epochs, in the order its trials were created."""
    out: dict[str, list[int]] = {}
    for t in dry.trials():
        a = t.user_attrs["assignments"]
        out.setdefault(config_key(a, "epochs"), []).append(int(a["epochs"]))
    return out


def fake_asha(max_trials: int, parallel: int = 2) -> dict:
    exp = experiment(
        name="fake-asha",
        algorithm="asha",
        max_trials=max_trials,
        parallel=parallel,
        settings={"resource_name": "epochs", "eta": 3, "random_state": 3},
        parameters=[
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
            {"name": "y", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5"}},
            EPOCHS,
        ],
    )
    return exp


def test_the_dry_run_promotes_through_the_service(tmp_path):
    """One trial at a time the order of results is fixed, so the ladder is too: 13 trials reach 9 epochs."""
    dry = dry_run(fake_asha(13, parallel=1), tmp_path / "out", progress=False, report=False)
    assert dry.status["status"]["trials"] == 13
    assert dry.algorithm.service.count == 13  # Katib's SuggestionCount: one assignment per trial
    assert sorted(ladders(dry).values()) == [[1]] * 6 + [[1, 3]] * 2 + [[1, 3, 9]]
    assert "asha rung 2 (epochs=9)" in [t.user_attrs["rung"] for t in dry.trials()]
    # The best trial is the promoted one: 9 epochs of the fake trial beat every shorter run here.
    best = dry.status["status"]["currentOptimalTrial"]["parameterAssignments"]
    assert {a["name"]: a["value"] for a in best}["epochs"] == "9"


def test_in_parallel_the_dry_run_never_waits_for_a_rung(tmp_path):
    """Two trials at a time, in whatever order they end: a promotion comes without waiting for the
    rung, and promotions go rung by rung, each configuration once per rung."""
    dry = dry_run(fake_asha(12, parallel=2), tmp_path / "out", progress=False, report=False)
    found = ladders(dry)
    assert dry.status["status"]["trials"] == 12 and [1, 3] in found.values()
    assert all(ladder == [1, 3, 9][: len(ladder)] for ladder in found.values())


def test_a_resumed_run_continues_the_same_decisions(tmp_path):
    """The Suggestion's bookkeeping is kept in the study: a second run with a bigger budget goes on
    where the first stopped, as the same run in one go (the fake trial is deterministic)."""
    out = tmp_path / "resumed"
    exp = fake_asha(6, parallel=1)
    exp["spec"]["resumePolicy"] = "LongRunning"
    dry_run(exp, out, progress=False, report=False)
    exp["spec"]["maxTrialCount"] = 10
    resumed = dry_run(exp, out, progress=False, report=False)
    once = dry_run(exp, tmp_path / "once", progress=False, report=False)
    assert [t.user_attrs["assignments"] for t in resumed.trials()] == [
        t.user_attrs["assignments"] for t in once.trials()
    ]


@pytest.mark.slow
def test_tune_experiments_asha_yaml_promotes_with_the_real_trial(tmp_path):
    """The shipped Experiment, tiny: 8 trials of the real `python -m trial` on 300 sample rows. Promoted
    trials resume from the checkpoint folder the dry-run gives the writable `checkpoints` mount."""
    from tests.conftest import katib_digits

    out = tmp_path / "asha"
    r = katib_digits(
        "tune",
        str(REPO / "experiments" / "asha.yaml"),
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
        "--max-trial-count",
        "8",
        "--parallel-trial-count",
        "2",
        "--mount",
        f"/data={REPO / 'data' / 'sample'}",
        "--trial-arg=--max-rows=300",
    )
    assert r.returncode == 0, r.stderr
    import csv

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 8 and all(row["state"] == "Succeeded" for row in rows), rows
    names = [p["name"] for p in load_experiment(REPO / "experiments" / "asha.yaml")["spec"]["parameters"]]
    by_config: dict[str, list[str]] = {}
    for row in rows:
        by_config.setdefault(config_key({n: row[n] for n in names}, "epochs"), []).append(row["epochs"])
    assert any(len(e) > 1 and e[:2] == ["1", "3"] for e in by_config.values()), by_config
    assert (out / "volumes" / "checkpoints" / "digits-asha").is_dir()
    logs = [log.read_text() for log in (out / "trials").glob("*/trial.log")]
    assert any("trial: resumed from" in log for log in logs)  # a promotion continued, not retrained
