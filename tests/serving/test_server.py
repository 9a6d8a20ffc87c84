"""`katib-digits serve`: KServe's V1 protocol and the V2 / Open Inference Protocol on a real server on
loopback, good and bad requests; the page at / (the browser drives it in test_page_browser.py)."""

from __future__ import annotations

import csv
import json
import threading
import urllib.error
import urllib.request

import pytest

from pipeline.serving.server import Predictor, make_server
from pipeline.submission.predict import predict_submission
from tests.conftest import SAMPLE, must_search

pytestmark = pytest.mark.slow  # real (tiny) training


@pytest.fixture(scope="module")
def url(ensemble):
    server = make_server(Predictor(ensemble, "digits"), "127.0.0.1", 0, max_instances=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sample_test_rows(n: int) -> list[list[int]]:
    import gzip

    with gzip.open(SAMPLE / "test.csv.gz", "rt") as fh:
        return [[int(v) for v in row] for row in list(csv.reader(fh))[1 : n + 1]]  # 784 pixels each


def call(url: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + path,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_test_rows_get_the_labels_predict_writes(url, ensemble, tmp_path):
    rows = sample_test_rows(5)
    status, answer = call(url, "/v1/models/digits:predict", json.dumps({"instances": rows}).encode())
    assert status == 200 and len(answer["predictions"]) == 5
    assert all(abs(sum(p) - 1) < 1e-4 and len(p) == 10 for p in answer["predictions"])
    predict_submission(ensemble, SAMPLE / "test.csv.gz", tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as fh:
        labels = [int(r["Label"]) for r in csv.DictReader(fh)][:5]
    assert [max(range(10), key=p.__getitem__) for p in answer["predictions"]] == labels
    square = [[rows[0][r * 28 : (r + 1) * 28] for r in range(28)]]  # 28 rows of 28: the same image
    assert call(url, "/v1/models/digits:predict", json.dumps({"instances": square}).encode())[1]["predictions"][
        0
    ] == pytest.approx(answer["predictions"][0], abs=1e-6)


def test_the_model_says_it_is_ready(url):
    assert call(url, "/v1/models/digits") == (200, {"name": "digits", "ready": True})


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", 'expected a JSON object with "instances"'),
        (json.dumps({"instances": []}).encode(), "non-empty list"),
        (json.dumps({"instances": [[0] * 783]}).encode(), "instance 0: shape [783], expected 784 pixels"),
        (json.dumps({"instances": [[0] * 784, [300] + [0] * 783]}).encode(), "instance 1: pixel values must be 0-255"),
        (json.dumps({"instances": [["a"] * 784]}).encode(), "instance 0: not an array of numbers"),
        (json.dumps({"instances": [[0] * 784] * 9}).encode(), "9 instances, at most 8 per request"),
    ],
)
def test_bad_requests_get_a_400_with_one_line_and_the_server_goes_on(url, body, words):
    status, answer = call(url, "/v1/models/digits:predict", body)
    assert status == 400 and words in answer["error"] and "\n" not in answer["error"]
    assert call(url, "/v1/models/digits:predict", json.dumps({"instances": [[0] * 784]}).encode())[0] == 200


def test_unknown_routes_are_404(url):
    assert call(url, "/v1/models/other:predict", b"{}")[0] == 404
    assert call(url, "/v2/models/other/infer", b"{}")[0] == 404
    assert call(url, "/v2/models/other")[0] == 404


def infer(url: str, body) -> tuple[int, dict]:
    return call(url, "/v2/models/digits/infer", body if isinstance(body, bytes) else json.dumps(body).encode())


def tensor(rows, shape=None, datatype="INT32", **extra) -> dict:
    flat = [v for row in rows for v in row]
    return {
        "inputs": [{"name": "pixels", "shape": shape or [len(rows), 784], "datatype": datatype, "data": flat}],
        **extra,
    }


def test_v2_infer_answers_what_v1_predicts(url):
    rows = sample_test_rows(4)
    v1 = call(url, "/v1/models/digits:predict", json.dumps({"instances": rows}).encode())[1]["predictions"]
    status, answer = infer(url, tensor(rows, id="req-1"))
    assert status == 200 and answer["model_name"] == "digits" and answer["id"] == "req-1"
    (out,) = answer["outputs"]
    assert out["name"] == "probabilities" and out["shape"] == [4, 10] and out["datatype"] == "FP32"
    assert out["data"] == pytest.approx([p for row in v1 for p in row], abs=1e-6)
    # FP32 values, 28x28 images, nested data: the same answer.
    square = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [4, 28, 28],
                "datatype": "FP32",
                "data": [[[float(v) for v in row[r * 28 : (r + 1) * 28]] for r in range(28)] for row in rows],
            }
        ]
    }
    assert infer(url, square)[1]["outputs"][0]["data"] == pytest.approx(out["data"], abs=1e-6)


def test_v2_health_and_metadata(url):
    assert call(url, "/v2/health/ready") == (200, {"ready": True})
    assert call(url, "/v2/health/live") == (200, {"live": True})
    assert call(url, "/v2/models/digits/ready") == (200, {"name": "digits", "ready": True})
    status, meta = call(url, "/v2/models/digits")
    assert status == 200 and meta["name"] == "digits"
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    status, server = call(url, "/v2")
    assert status == 200 and server["name"] == "katib-digits"


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "not JSON"),
        ({"instances": [[0] * 784]}, 'expected a JSON object with "inputs"'),
        ({"inputs": []}, "0 input tensors, expected one"),
        ({"inputs": [{"name": "pixels", "shape": [1, 784], "data": [0] * 784}]}, 'needs "name", "shape", "datatype"'),
        (tensor([[0] * 783], shape=[1, 783]), "shape [1, 783]: expected [n, 784]"),
        (tensor([[0] * 784], shape=[0, 784]), "with n >= 1"),
        (tensor([[0] * 784], shape=[2, 784]), "data has 784 values, shape [2, 784] needs 1568"),
        (tensor([[0] * 784], datatype="BYTES"), "datatype 'BYTES': expected a number type"),
        (tensor([[0.5] * 784]), "datatype INT32: the data has values that are not integers"),
        (tensor([[0] * 784, [0] * 783 + [256]]), "image 1: pixel values must be 0-255"),
        (tensor([["a"] * 784]), '"data" is not an array of numbers'),
        (tensor([[0] * 784] * 9), "9 images, at most 8 per request"),
        (tensor([[0] * 784], outputs=[{"name": "logits"}]), 'the only output is "probabilities"'),
    ],
)
def test_v2_bad_requests_get_a_400_with_one_line(url, body, words):
    status, answer = infer(url, body)
    assert status == 400 and words in answer["error"] and "\n" not in answer["error"]
    assert infer(url, tensor([[0] * 784]))[0] == 200


def test_the_page_is_served_whole_and_loads_nothing_from_elsewhere(url):
    with urllib.request.urlopen(url + "/", timeout=30) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
        policy, html = answer.headers["Content-Security-Policy"], answer.read().decode()
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert '<canvas id="pad"' in html and "v1/models" in html and '<button id="clear" type="button">Clear' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert "<script src" not in html and '<link rel="stylesheet"' not in html


def test_an_exported_saved_model_serves_the_same_answers(ensemble, tmp_path):
    """`serve --model OUT` on what `export --out OUT` wrote: the highest version, as TF Serving loads it."""
    import numpy as np

    from pipeline.serving.export import export_saved_model
    from pipeline.serving.server import images_to_pixels

    export_saved_model(ensemble / "member-0", tmp_path / "digits")  # version 1: one member, not the ensemble
    export_saved_model(ensemble, tmp_path / "digits", version=2)
    pixels = images_to_pixels(sample_test_rows(8))
    served = Predictor(tmp_path / "digits", "digits")
    assert served.saved_model == tmp_path / "digits" / "2"
    assert np.allclose(served.predict(pixels), Predictor(ensemble, "digits").predict(pixels), atol=1e-5)
    assert Predictor(tmp_path / "digits" / "1", "digits").saved_model == tmp_path / "digits" / "1"


@pytest.mark.process
def test_the_bodies_docs_serving_md_makes_get_answers(url):
    """The doc's one-liners (run as written, from the project root) and its two curl routes."""
    import re
    import subprocess
    import sys

    from tests.conftest import REPO

    doc = (REPO / "docs" / "serving.md").read_text()
    made = re.findall(r"^\.venv/bin/python -c '(.+)' > (\w+\.json)$", doc, re.M)
    assert [name for _, name in made] == ["instance.json", "infer.json"]
    answers = []
    for code, name in made:
        body = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
        route = must_search(rf"--data-binary @{name} http://127\.0\.0\.1:8080(\S+)", doc)[1]
        status, answer = call(url, route, body)
        assert status == 200, answer
        answers.append(answer["predictions"][0] if "predictions" in answer else answer["outputs"][0]["data"])
    assert answers[0] == pytest.approx(answers[1], abs=1e-6)
