"""`katib-digits serve`: KServe's V1 protocol on a real server on loopback, good and bad requests."""
from __future__ import annotations

import csv
import json
import threading
import urllib.error
import urllib.request

import pytest

from pipeline.serving.server import Predictor, make_server
from pipeline.submission.predict import predict_submission
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow  # real (tiny) training


@pytest.fixture(scope="module")
def url(ensemble):
    server = make_server(Predictor(ensemble, "digits"), "127.0.0.1", 0, max_instances=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def call(url: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_test_rows_get_the_labels_predict_writes(url, ensemble, tmp_path):
    import gzip

    with gzip.open(SAMPLE / "test.csv.gz", "rt") as fh:
        rows = [[int(v) for v in row] for row in list(csv.reader(fh))[1:6]]  # 784 pixels each
    status, answer = call(url, "/v1/models/digits:predict", json.dumps({"instances": rows}).encode())
    assert status == 200 and len(answer["predictions"]) == 5
    assert all(abs(sum(p) - 1) < 1e-4 and len(p) == 10 for p in answer["predictions"])
    predict_submission(ensemble, SAMPLE / "test.csv.gz", tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as fh:
        labels = [int(r["Label"]) for r in csv.DictReader(fh)][:5]
    assert [max(range(10), key=p.__getitem__) for p in answer["predictions"]] == labels
    square = [[rows[0][r * 28:(r + 1) * 28] for r in range(28)]]  # 28 rows of 28: the same image
    assert call(url, "/v1/models/digits:predict", json.dumps({"instances": square}).encode())[1]["predictions"][0] \
        == pytest.approx(answer["predictions"][0], abs=1e-6)


def test_the_model_says_it_is_ready(url):
    assert call(url, "/v1/models/digits") == (200, {"name": "digits", "ready": True})


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", 'expected a JSON object with "instances"'),
    (json.dumps({"instances": []}).encode(), "non-empty list"),
    (json.dumps({"instances": [[0] * 783]}).encode(), "instance 0: shape [783], expected 784 pixels"),
    (json.dumps({"instances": [[0] * 784, [300] + [0] * 783]}).encode(), "instance 1: pixel values must be 0-255"),
    (json.dumps({"instances": [["a"] * 784]}).encode(), "instance 0: not an array of numbers"),
    (json.dumps({"instances": [[0] * 784] * 9}).encode(), "9 instances, at most 8 per request"),
])
def test_bad_requests_get_a_400_with_one_line_and_the_server_goes_on(url, body, words):
    status, answer = call(url, "/v1/models/digits:predict", body)
    assert status == 400 and words in answer["error"] and "\n" not in answer["error"]
    assert call(url, "/v1/models/digits:predict", json.dumps({"instances": [[0] * 784]}).encode())[0] == 200


def test_unknown_routes_are_404(url):
    assert call(url, "/v1/models/other:predict", b"{}")[0] == 404
    assert call(url, "/v2/models/digits")[0] == 404
