"""The drawing page at / in a real headless browser: Debian's chromium driven by Playwright (never
Playwright's own browser downloads), against `katib-digits serve` started as a process on loopback.

Real sample digits the model never saw are drawn on the canvas with the mouse, stroke by stroke (each
run of inked pixels in a row is one drag, with a pen one source pixel wide); the page crops, scales and
centres the drawing as the training data was prepared, asks the V1 route, and shows its answer, which
must match the label for most of them. `make test-browser` runs this tier (it installs chromium when
missing). KATIB_DIGITS_SCREENSHOT=docs/serving-page.png also writes the screenshot the docs show."""

from __future__ import annotations

import csv
import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SAMPLE
from tests.serving.conftest import TRAINED_ROWS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.process]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DIGITS = 20  # unseen sample rows drawn
INK = 128  # a source pixel is drawn when it is at least this bright
# Measured here: 19 of these 20 drawn digits read right, and 97 of the first 100 unseen rows (the model
# gets 95.5% of all 200 unseen rows from their pixels); 16 of 20 leaves room for another machine's float
# rounding and training order without hiding a broken page (a page that skipped the centring or the
# scaling reads far fewer).
MIN_MATCHES = 16
ANSWERED = """() => {
  const r = document.getElementById("result");
  return ["done", "error"].includes(r.dataset.state)
    && r.dataset.version === document.getElementById("pad").dataset.version;
}"""


def chromium() -> str:
    found = os.environ.get("KATIB_DIGITS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).is_file():
        pytest.fail("Debian's chromium is not installed: `make test-browser` installs it (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def url(digit_model, tmp_path_factory):
    """`katib-digits serve` as its own process, on a free loopback port."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "serve",
                "--model",
                str(digit_model),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield f"http://127.0.0.1:{found[1]}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    """The page, with every request it makes recorded."""
    context = browser.new_context(viewport={"width": 800, "height": 640})
    page = context.new_page()
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(url + "/")
    yield page
    context.close()


def unseen_digits(n: int) -> list[tuple[int, np.ndarray]]:
    """(label, 28x28 pixels) of sample rows after the ones the model trained on."""
    with gzip.open(SAMPLE / "train.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))[1 + TRAINED_ROWS : 1 + TRAINED_ROWS + n]
    return [(int(row[0]), np.array(row[1:], dtype=int).reshape(28, 28)) for row in rows]


def strokes(image: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of each run of inked pixels, row by row."""
    runs = []
    for r, row in enumerate(image >= INK):
        c = 0
        while c < 28:
            if row[c]:
                start = c
                while c < 28 and row[c]:
                    c += 1
                runs.append((r, start, c - 1))
            c += 1
    return runs


def draw(page, image: np.ndarray) -> None:
    """Drag the mouse along each stroke, a source pixel being 1/28 of the canvas."""
    box = page.locator("#pad").bounding_box()
    cell = box["width"] / 28
    for r, c0, c1 in strokes(image):
        y = box["y"] + (r + 0.5) * cell
        page.mouse.move(box["x"] + (c0 + 0.5) * cell, y)
        page.mouse.down()
        page.mouse.move(box["x"] + (c1 + 0.5) * cell, y, steps=2)
        page.mouse.up()


def test_drawn_sample_digits_are_read_right(page, url, tmp_path):
    page.locator("#pen").fill("10")  # one source pixel: the canvas is 280 px, the image 28
    started = time.monotonic()
    results = []
    for label, image in unseen_digits(DIGITS):
        page.click("#clear")
        draw(page, image)
        page.wait_for_function(ANSWERED, timeout=30_000)
        assert page.get_attribute("#result", "data-state") == "done", page.inner_text("#status")
        sent = np.array(page.evaluate("window.digitPage.lastInstance"), dtype=float)
        assert sent.shape == (784,) and sent.min() >= 0 and sent.max() <= 255 and (sent == sent.round()).all()
        results.append((label, int(page.inner_text("#digit")), np.corrcoef(sent, image.ravel())[0, 1]))
    seconds = time.monotonic() - started
    matches = sum(label == got for label, got, _ in results)
    similarity = float(np.mean([c for _, _, c in results]))
    print(
        f"\n{matches}/{DIGITS} drawn digits read right in {seconds:.1f} s; the 28x28 the page sent "
        f"correlates {similarity:.2f} with the source image on average; (label, shown): "
        f"{[(label, got) for label, got, _ in results]}"
    )
    assert matches >= MIN_MATCHES, results
    # The page's scaling and centring reproduce the source, not just a lucky guess (measured 0.78).
    assert similarity > 0.6, results
    # Ten bars whose percentages the chart shows, the highest one on the shown digit.
    bars = [float(h) for h in page.locator("#chart rect").evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    assert len(bars) == 10 and bars.index(max(bars)) == results[-1][1]
    assert page.locator("#chart rect.hit").count() == 1
    # Nothing was fetched from anywhere but this server.
    assert page.requests and all(u.startswith(url + "/") for u in page.requests), page.requests
    page.screenshot(path=str(tmp_path / "serving-page.png"))
    if target := os.environ.get("KATIB_DIGITS_SCREENSHOT"):
        page.screenshot(path=target)


def test_clear_works_from_the_keyboard(page):
    _, image = unseen_digits(1)[0]
    draw(page, image)
    page.wait_for_function(ANSWERED, timeout=30_000)
    assert page.get_attribute("#result", "data-state") == "done"
    page.keyboard.press("Tab")  # the first focusable element is the Clear button
    assert page.evaluate("document.activeElement.id") == "clear"
    page.keyboard.press("Enter")
    assert page.inner_text("#digit") == "?" and page.get_attribute("#result", "data-state") == "empty"
    assert page.locator("#chart rect.hit").count() == 0
    assert page.evaluate("window.digitPage.toInstance()") is None  # the canvas is blank again
    draw(page, image)
    page.wait_for_function(ANSWERED, timeout=30_000)
    page.keyboard.press("Escape")
    assert page.inner_text("#digit") == "?"


def test_a_phone_can_draw_by_touch_and_reads_it_without_scrolling_sideways(browser, url):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, device_scale_factor=2
    )
    try:
        page = context.new_page()
        page.goto(url + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = page.locator("#pad").bounding_box()
        assert 250 <= box["width"] <= 390
        page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a dot: one touch stroke
        page.wait_for_function(ANSWERED, timeout=30_000)
        assert page.get_attribute("#result", "data-state") == "done"
        assert re.fullmatch(r"[0-9]", page.inner_text("#digit"))
        for control in ("#clear", "#pen"):
            assert page.locator(control).bounding_box()["height"] >= 44  # a finger-sized target
        assert page.locator("label[for=pen]").inner_text() == "Pen width"
    finally:
        context.close()
