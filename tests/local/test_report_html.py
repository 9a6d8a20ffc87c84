"""report.html opens with the outcome (end condition, best trial, counts, times), then a sortable table of
every trial, then Optuna's plots; trials.json lists the trials as Katib's Trial objects. One real dry-run
of the stand-in trial (tests/fake_trial.py): its first trial crashes, the next three succeed."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import time
from datetime import UTC, datetime
from html import unescape

import optuna
import pytest

from pipeline.katib import status as ks
from pipeline.local import outputs
from pipeline.local.controller import run_experiment
from tests.conftest import must_search
from tests.fake_trial import experiment


@dataclasses.dataclass
class Tuned:
    snap: outputs.Snapshot  # what the dry-run wrote its outputs from
    status: dict  # experiment.json
    csv_rows: list[dict[str, str]]  # trials.csv
    page: str  # report.html


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Tuned:
    tmp = tmp_path_factory.mktemp("report")
    exp = experiment(
        max_trials=4,
        parallel=1,
        max_failed=3,
        settings={"random_state": 1},
        args=[f"--crash-once={tmp / 'crashed'}", "--epochs=2"],
    )
    snaps: list[outputs.Snapshot] = []
    write = outputs.write

    def keep(snap: outputs.Snapshot) -> dict:
        snaps.append(snap)
        return write(snap)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outputs, "write", keep)
        run_experiment(exp, tmp / "out", {}, progress=False, report=True)
    out = tmp / "out"
    with open(out / "trials.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    return Tuned(
        snaps[-1],
        json.loads((out / "experiment.json").read_text()),
        csv_rows,
        (out / "report.html").read_text(encoding="utf-8"),
    )


def _plain(fragment: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", fragment))


def text_of(page: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped, entities decoded)."""
    found = must_search(rf"<(\w+) id='{element_id}'>(.*?)</\1>", page, re.S)
    return _plain(found[2])


def table(page: str) -> tuple[list[str], list[list[str]], list[str]]:
    """The trial table: its columns (data-column), its rows' cell texts, the class of each row."""
    columns = re.findall(r"<th data-column='([^']*)'", page)
    body = must_search(r"<tbody>(.*?)</tbody>", page, re.S)[1]
    rows = re.findall(r"<tr( class='best')?>(.*?)</tr>", body, re.S)
    cells = [[_plain(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)] for _, tr in rows]
    return columns, cells, ["best" if best else "" for best, _ in rows]


@pytest.mark.process
def test_the_outcome_names_the_end_the_best_trial_and_the_counts(tuned):
    page = tuned.page
    end = tuned.status["status"]["conditions"][-1]
    assert (end["type"], end["reason"]) == ("Succeeded", "ExperimentMaxTrialsReached")
    condition = text_of(page, "condition")
    assert "Succeeded" in condition and "ExperimentMaxTrialsReached" in condition and end["message"] in condition

    best = tuned.status["status"]["currentOptimalTrial"]
    best_row = next(r for r in tuned.csv_rows if r["name"] == best["bestTrialName"])
    assert text_of(page, "best") == (
        f"Best trial: {best['bestTrialName']}, accuracy (maximize) = {best_row['objective']}"
    )
    assert best_row["objective"] == max(
        (r["objective"] for r in tuned.csv_rows if r["state"] == "Succeeded"), key=float
    )
    listed = re.findall(r"<li>(.*?)</li>", must_search(r"<ul id='best-parameters'>(.*?)</ul>", page)[1])
    assert [unescape(li) for li in listed] == [f"{a['name']} = {a['value']}" for a in best["parameterAssignments"]]
    assert [a["name"] for a in best["parameterAssignments"]] == ["x", "y"]

    assert text_of(page, "counts") == (
        "4 trials: Succeeded 3, Failed 1, EarlyStopped 0, MetricsUnavailable 0, Killed 0"
    )
    assert tuned.status["status"]["trialsSucceeded"] == 3 and tuned.status["status"]["trialsFailed"] == 1


@pytest.mark.process
def test_the_times_are_the_experiments_wall_time_and_the_sum_of_the_trials(tuned):
    times = text_of(tuned.page, "times")
    assert times.startswith(f"Started {tuned.status['status']['startTime']}, ended ")
    shown = float(must_search(r"The 4 trials with a start and an end ran ([0-9.]+) s in all", times)[1])
    assert shown == pytest.approx(sum(float(r["duration_s"]) for r in tuned.csv_rows), abs=0.1)
    assert "no CPU time" in times  # none is recorded, none is made up
    # A long tune reads in hours: one hour, two minutes and three seconds after the start.
    start = datetime.strptime(tuned.snap.start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    later = outputs.times_html(tuned.snap, outputs.trial_rows(tuned.snap), start + 3723)
    assert "wall time 1:02:03." in later


@pytest.mark.process
def test_the_table_lists_every_trial_as_trials_csv_does(tuned):
    columns, rows, classes = table(tuned.page)
    assert columns == ["name", "state", "parameter:x", "parameter:y", "objective", "duration"]
    types = re.findall(r"<th data-column='[^']*' data-type='(\w+)'", tuned.page)
    assert types == ["text", "text", "number", "number", "number", "number"]
    expected = [[r["name"], r["state"], r["x"], r["y"], r["objective"], r["duration_s"]] for r in tuned.csv_rows]
    assert rows == expected
    assert [r[1] for r in rows] == ["Failed", "Succeeded", "Succeeded", "Succeeded"]
    assert rows[0][4] == "unavailable"  # the crashed trial has no objective value
    best = tuned.status["status"]["currentOptimalTrial"]["bestTrialName"]
    assert [r[0] for r, c in zip(rows, classes, strict=True) if c == "best"] == [best]


@pytest.mark.process
def test_the_page_is_outcome_then_table_then_plots_and_opens_offline(tuned):
    page = tuned.page
    order = [page.index(f"<section id='{s}'>") for s in ("outcome", "trials", "plots")]
    assert order == sorted(order)
    for title in ("Optimization history", "Parameter importances", "Parallel coordinates", "Intermediate values"):
        assert f"<h2>{title}" in page
    assert "not drawn" not in page  # three completed trials draw all four plots
    assert not re.search(r"<script[^>]*\bsrc=", page)  # plotly.js and the sort script are inline
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1  # the library once, not once a plot
    assert 'document.querySelectorAll("table.sortable")' in page  # the sort script (tests/serving clicks it)


@pytest.mark.process
def test_a_run_that_stopped_running_says_why(tuned):
    snap = dataclasses.replace(tuned.snap, end=None, hang="all 1 parallel slot(s) are held")
    page = outputs.report_html(snap, now=time.time())
    condition = text_of(page, "condition")
    assert "Running" in condition and "ExperimentRunning" in condition
    assert "(local dry-run stopped: all 1 parallel slot(s) are held)" in condition
    # the same condition as experiment.json would carry
    assert outputs.experiment_object(snap)["status"]["conditions"][-1]["message"] in condition
    assert ", written " in text_of(page, "times")


@pytest.mark.process
def test_every_value_is_escaped(tuned):
    first = tuned.snap.trials[0]
    hostile = first.user_attrs | {"name": "<b>trial</b>", "assignments": {"x": "<i>0.1</i>", "y": "1&2"}}
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs=hostile, params={}, distributions={}
    )
    snap = dataclasses.replace(
        tuned.snap, trials=[trial], end=("Failed", "Why<not>", "a <script>alert(1)</script> message"), notes=["<u>"]
    )
    page = outputs.report_html(snap, now=time.time())
    before_plots = page[: page.index("<section id='plots'>")]
    for raw in ("<b>trial", "<i>0.1", "Why<not>", "<script>alert", "<u>"):
        assert raw not in before_plots
    assert "&lt;b&gt;trial&lt;/b&gt;" in before_plots and "1&amp;2" in before_plots
    assert "Why<not>" in text_of(page, "condition")
    _, rows, _ = table(page)
    assert rows[0][:4] == ["<b>trial</b>", "Failed", "<i>0.1</i>", "1&2"]


@pytest.mark.process
def test_a_plot_that_cannot_be_drawn_is_skipped_with_a_note(tuned):
    snap = dataclasses.replace(tuned.snap, study=optuna.create_study())  # no completed trial
    page = outputs.report_html(snap, now=time.time())
    assert page.count("not drawn: ValueError: not enough completed trials") == 4
    assert "<section id='outcome'>" in page and len(table(page)[1]) == 4  # the rest of the page is there


def test_state_counts_keep_katibs_zeros_and_add_the_local_states():
    outcomes = [
        ks.TrialOutcome("a", ks.SUCCEEDED),
        ks.TrialOutcome("b", ks.RUNNING),
        ks.TrialOutcome("c", "Interrupted"),
        ks.TrialOutcome("d", ""),
        ks.TrialOutcome("e", ks.SUCCEEDED),
    ]
    assert outputs.state_counts(outcomes) == {
        "Succeeded": 2,
        "Failed": 0,
        "EarlyStopped": 0,
        "MetricsUnavailable": 0,
        "Killed": 0,
        "Running": 1,
        "Interrupted": 1,
        "Queued": 1,
    }


def test_the_status_files_follow_the_run_before_its_end(tmp_path):
    """experiment.json and trials.csv are written as trials are added and end, as Katib updates the
    Experiment's status while it runs; report.html only once the run has ended."""
    exp = experiment(max_trials=3, parallel=1, settings={"random_state": 2}, args=["--epochs=1"])
    seen: list[tuple[bool, list[str]]] = []  # (ended, each trial's Katib state) per write
    write = outputs.write

    def keep(snap: outputs.Snapshot) -> dict:
        obj = write(snap)
        with open(snap.out / "trials.csv", newline="") as fh:
            seen.append((snap.end is not None, [r["state"] for r in csv.DictReader(fh)]))
        assert (snap.out / "report.html").exists() == (snap.end is not None)
        return obj

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outputs, "write", keep)
        run_experiment(exp, tmp_path / "out", {}, progress=False, report=True)
    while_running = [states for ended, states in seen if not ended]
    assert seen[-1] == (True, ["Succeeded"] * 3)
    # the first trial seen running, then each trial's end before the last one, which ends the run
    assert ["Running"] in while_running
    assert [n for n in (states.count("Succeeded") for states in while_running) if n] == [1, 2]


def test_trials_json_lists_katib_trials_that_rank_like_the_optimal_trial(tuned):
    """trials.json is `kubectl get trials -l katib.kubeflow.org/experiment=NAME -o json`'s shape: what the
    retrain's top-k reads, from a dry-run or a cluster alike; its best-ranked trial is currentOptimalTrial."""
    from pipeline.katib.experiment import Experiment
    from pipeline.katib.result import load_trials

    listed = json.loads((tuned.snap.out / "trials.json").read_text())
    assert listed["kind"] == "List" and len(listed["items"]) == 4
    exp_name = tuned.status["metadata"]["name"]
    for item, row in zip(listed["items"], tuned.csv_rows, strict=True):
        assert item["kind"] == "Trial" and item["metadata"]["name"] == row["name"]
        assert item["metadata"]["labels"] == {"katib.kubeflow.org/experiment": exp_name}
        true = [c["type"] for c in item["status"]["conditions"] if c["status"] == "True"]
        assert true == ["Created", row["state"]]
        assert item["status"]["completionTime"] >= item["status"]["startTime"]
    assert [c["type"] for c in listed["items"][0]["status"]["conditions"]][-1] == "Failed"
    assert "observation" not in listed["items"][0]["status"]  # the crashed trial reported nothing

    experiment = Experiment(tuned.status, "experiment.json")
    trials = load_trials(tuned.snap.out / "trials.json", experiment)
    ranked = ks.ranked_trials(trials, experiment.objective)
    assert len(ranked) == 3 and ranked[0].name == tuned.status["status"]["currentOptimalTrial"]["bestTrialName"]
    values = [float(t.objective) for t in ranked]
    assert values == sorted(values, reverse=True)
    best = tuned.status["status"]["currentOptimalTrial"]["parameterAssignments"]
    assert ranked[0].assignments == {a["name"]: a["value"] for a in best}
