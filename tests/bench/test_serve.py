"""bench.loadgen, the load it puts on a real `katib-digits serve` (bounded in requests and in time), and
bench.sections.serve end to end with the server in its own process (its own file, so pytest-xdist's
loadfile runs it beside the other bench tests)."""

from __future__ import annotations

import threading

import pytest

from bench.loadgen import load, request_bodies
from bench.report import summary_rows
from bench.sections import serve

pytestmark = [pytest.mark.slow, pytest.mark.process]  # trains, exports and serves a real (tiny) model


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return serve.serve_model(tmp_path_factory.mktemp("serve"), rows=300)


@pytest.fixture(scope="module")
def port(saved_model):
    from pipeline.serving.server import Predictor, make_server

    server = make_server(Predictor(saved_model, "digits"), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_bodies_are_real_test_rows():
    import json

    from tests.conftest import SAMPLE
    from trial.data import load_test

    rows = load_test(SAMPLE / "test.csv.gz").reshape(-1, 784)
    bodies = request_bodies(batch=3)
    assert len(bodies) == len(rows) // 3
    assert json.loads(bodies[1])["instances"] == rows[3:6].astype(int).tolist()


def test_the_load_stops_at_its_request_count(port):
    result = load(port, request_bodies(1), clients=4, seconds=120, max_requests=30)
    assert result["requests"] == result["answered"] == 30 and result["statuses"] == {200: 30}
    assert result["failures"] == {} and result["wall_s"] < 120
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_the_load_stops_at_its_time(port):
    result = load(port, request_bodies(2), clients=2, seconds=1.5, max_requests=10**9)
    assert 1.5 <= result["wall_s"] < 1.5 + 30  # the last requests started before the time was up
    assert result["requests"] == result["answered"] == sum(result["statuses"].values()) > 0
    # 3 significant digits (0.5 %) of a rate over a wall time rounded to 0.01 s (0.3 % of 1.5 s)
    assert result["requests_per_s"] == pytest.approx(result["answered"] / result["wall_s"], rel=0.008)


def test_the_serve_section_loads_its_own_server_process_and_reads_its_memory(saved_model, tmp_path):
    result = serve.measure(tmp_path, clients=4, seconds=3, max_requests=10**9, batch=4, model=saved_model)
    assert result["statuses"] and set(result["statuses"]) == {200} and result["failures"] == {}
    assert result["answered"] == result["requests"] and result["batch"] == 4
    assert result["server"] == f"katib-digits serve --model {saved_model} --port 0"
    rss, threads = result["rss_mib"], result["threads"]
    assert 0 < rss["before"] <= rss["peak_since_start"] and rss["max_during"] <= rss["peak_since_start"]
    # the server's threads are a fixed pool: as many during and after the load as before it
    assert threads["before"] == threads["max_during"] == threads["after"]
    shown = dict(summary_rows({"serve": result}))
    assert shown["serve: 4 clients, 4 image(s) a request, V1"].startswith(f"{result['requests_per_s']} requests/s")
    assert f"{{200: {result['answered']}}}, failures none" in shown["serve: answers, server memory and threads"]
    assert (tmp_path / "serve.log").read_text().count('"POST /v1/models/digits:predict HTTP/1.1" 200') == result[
        "answered"
    ] + 20  # the server's own log: every request of the load and the warm-up
