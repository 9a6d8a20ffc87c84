"""report.html in a real headless browser (Debian's chromium driven by Playwright, as test_page_browser.py):
opened from disk, it shows the outcome first, and clicking a column header of the trial table sorts the rows
(numbers by value, "unavailable" last), ascending then descending. `make test-browser` runs this tier."""

from __future__ import annotations

import csv

import pytest

from pipeline.local.controller import run_experiment
from tests.fake_trial import experiment
from tests.serving.test_page_browser import CHROMIUM_ARGS, chromium

pytestmark = [pytest.mark.browser, pytest.mark.process]

OBJECTIVE_CELLS = "rows => rows.map(r => r.cells[4].textContent)"  # name, state, x, y, objective, duration
NAME_CELLS = "rows => rows.map(r => r.cells[0].textContent)"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A finished dry-run of the stand-in trial: the first of six trials crashes (objective unavailable)."""
    tmp = tmp_path_factory.mktemp("report")
    exp = experiment(
        max_trials=6,
        parallel=1,
        max_failed=3,
        settings={"random_state": 3},
        args=[f"--crash-once={tmp / 'crashed'}", "--epochs=1"],
    )
    run_experiment(exp, tmp / "out", {}, progress=False, report=True)
    with open(tmp / "out" / "trials.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    return tmp / "out" / "report.html", rows


@pytest.fixture
def requests() -> list[str]:
    """Every URL the page asks for."""
    return []


@pytest.fixture
def page(report, requests):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report[0].as_uri())
        yield page
        browser.close()


def test_the_report_opens_with_the_outcome(page, requests):
    heading = page.locator("#outcome h2")
    assert heading.is_visible() and heading.inner_text() == "Outcome"
    condition = page.locator("#condition")
    assert condition.is_visible()
    assert "Succeeded" in condition.inner_text() and "ExperimentMaxTrialsReached" in condition.inner_text()
    assert page.locator("#best").is_visible() and "Best trial:" in page.locator("#best").inner_text()
    # the outcome is above the table, the table above the plots
    tops = [page.locator(f"#{s}").bounding_box()["y"] for s in ("outcome", "trials", "plots")]
    assert tops == sorted(tops)
    assert requests and all(u.startswith("file://") for u in requests), requests  # nothing from the network


def test_clicking_the_objective_header_sorts_the_trials(page, report):
    rows = page.locator("#trials tbody tr")
    assert rows.count() == 6
    original = rows.evaluate_all(NAME_CELLS)
    assert original == list(report[1])  # creation order, as trials.csv

    header = page.locator("th[data-column='objective']")
    header.click()
    values = rows.evaluate_all(OBJECTIVE_CELLS)
    numbers = [float(v) for v in values[:-1]]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5, values
    assert values[-1] == "unavailable"  # the crashed trial, after every number
    assert header.get_attribute("aria-sort") == "ascending"
    # each row moved whole: its name still goes with its objective
    names = rows.evaluate_all(NAME_CELLS)
    assert [report[1][n]["objective"] for n in names] == values

    header.click()
    values = rows.evaluate_all(OBJECTIVE_CELLS)
    assert [float(v) for v in values[:-1]] == sorted(numbers, reverse=True)
    assert values[-1] == "unavailable"
    assert header.get_attribute("aria-sort") == "descending"
    assert rows.first.get_attribute("class") == "best"  # the best trial on top

    page.locator("th[data-column='name']").click()
    assert rows.evaluate_all(NAME_CELLS) == sorted(original)
    assert header.get_attribute("aria-sort") is None  # one sorted column at a time
