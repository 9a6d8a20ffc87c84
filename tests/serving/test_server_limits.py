"""`katib-digits serve` under load, on a real server on loopback: stalled and trickling clients time out
without blocking others, connections beyond the workers and the waiting get 503 with Retry-After, the
server's threads stay a fixed pool, and a batch of N images is one model call."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from pipeline.serving.server import LINGER_S, Predictor, make_server
from tests.serving.test_server import sample_test_rows

pytestmark = pytest.mark.slow  # real (tiny) training

HALF_REQUEST = (
    b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: digits\r\nContent-Type: application/json\r\n"
    b'Content-Length: 4000\r\n\r\n{"instances": [[0, 0, '
)
SLACK_S = 5.0  # a loaded 2-core machine may schedule the server late; never early


@pytest.fixture(scope="module")
def predictor(ensemble):
    return Predictor(ensemble, "digits")


@contextmanager
def serving(predictor, max_instances: int = 16, **limits):
    server = make_server(predictor, "127.0.0.1", 0, max_instances=max_instances, quiet=True, **limits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def post(port: int, body: dict, path: str = "/v1/models/digits:predict") -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        connection.close()


def half_request(port: int) -> socket.socket:
    """A client that sends half a request and then waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(HALF_REQUEST)
    return sock


def until_closed(sock: socket.socket) -> tuple[int, dict, float]:
    """Read what the server sends until it closes: the status, the JSON body, and when the status came."""
    data, first = b"", None
    try:
        while chunk := sock.recv(65536):
            first = first or time.monotonic()
            data += chunk
    except ConnectionResetError:  # the server closed after its answer while this client still sent
        pass
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert first is not None, "the server closed without a byte"
    return int(head.split()[1]), json.loads(body), first


def wait_for(condition, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the server never got there"
        time.sleep(0.01)


def one_row() -> dict:
    return {"instances": sample_test_rows(1)}


def test_a_stalled_client_does_not_block_others_and_is_closed_after_the_timeout(predictor):
    with serving(predictor, workers=2, waiting=4, request_timeout=2.0) as server:
        port = server.server_address[1]
        start = time.monotonic()
        stalled = half_request(port)
        answers = [post(port, one_row())[0] for _ in range(5)]  # while it stalls
        served = time.monotonic()
        status, body, answered = until_closed(stalled)
    assert answers == [200] * 5 and served < answered  # nobody waited for the stalled client
    assert status == 408 and body == {"error": "the request did not arrive whole within 2 s"}
    assert 2.0 <= answered - start < 2.0 + SLACK_S


def test_a_client_that_trickles_bytes_gets_no_more_time_than_one_that_sends_nothing(predictor):
    with serving(predictor, workers=1, waiting=1, request_timeout=1.5) as server:
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=60)
        start = time.monotonic()
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nX-Slow: ")
        stop = threading.Event()

        def trickle():  # one byte every 0.2 s: a per-read timeout of 1.5 s would never fire
            try:
                while not stop.wait(0.2):
                    sock.send(b"a")
            except OSError:  # the server closed the connection
                pass

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        status, body, answered = until_closed(sock)
        stop.set()
        trickler.join(5)
    assert status == 408 and "within 1.5 s" in body["error"]
    assert 1.5 <= answered - start < 1.5 + SLACK_S


def test_beyond_the_workers_and_the_waiting_a_client_gets_503_with_retry_after_at_once(predictor):
    with serving(predictor, workers=1, waiting=1, request_timeout=3.0) as server:
        port = server.server_address[1]
        busy = half_request(port)  # holds the one worker
        wait_for(lambda: server.in_progress == 1 and server.waiting.qsize() == 0)
        queued = half_request(port)  # waits for it
        wait_for(lambda: server.waiting.qsize() == 1)
        status, headers, body = post(port, one_row())
        # answered while the two before it are still open, their timeouts not yet run
        assert select.select([busy, queued], [], [], 0)[0] == []
        assert status == 503 and headers["Retry-After"] == "1"
        assert body == {"error": "busy (1 in progress, 1 waiting); retry after 1 s"}
        assert until_closed(busy)[0] == 408 and until_closed(queued)[0] == 408  # then each has its time
        assert post(port, one_row())[0] == 200  # and the server serves again


def test_the_server_runs_a_fixed_pool_of_threads_however_many_clients(predictor):
    answers, peak = [], []
    with serving(predictor, workers=3, waiting=32) as server:
        port = server.server_address[1]
        before = threading.active_count()
        clients = [
            threading.Thread(target=lambda: answers.append(post(port, one_row())[0]), name=f"client-{i}")
            for i in range(24)
        ]
        for client in clients:
            client.start()
        while any(client.is_alive() for client in clients):
            peak.append(len([t for t in threading.enumerate() if not t.name.startswith("client-")]))
            time.sleep(0.005)
        for client in clients:
            client.join()
        named = sorted(t.name for t in server.threads)
    assert answers == [200] * 24
    assert max(peak) <= before  # no thread per connection (ThreadingHTTPServer would start 24)
    assert named == ["katib-digits-busy", "katib-digits-worker-0", "katib-digits-worker-1", "katib-digits-worker-2"]


@pytest.mark.parametrize("form", ["keras", "saved_model"])
def test_a_batch_of_n_images_is_one_model_call(ensemble, tmp_path, form):
    """40 images: more than one of Keras' predict() steps (32), so a batch cut in steps would show."""
    from pipeline.serving.export import export_saved_model

    predictor = Predictor(ensemble if form == "keras" else export_saved_model(ensemble, tmp_path / "m"), "digits")
    calls, model = [], predictor._predict

    def counted(pixels):  # the real model, called through; only the calls are written down
        calls.append(pixels.shape)
        return model(pixels)

    predictor._predict = counted
    rows = sample_test_rows(40)
    with serving(predictor, max_instances=64) as server:
        port = server.server_address[1]
        status, _, v1 = post(port, {"instances": rows})
        assert status == 200 and calls == [(40, 28, 28, 1)]
        v2 = {
            "inputs": [
                {"name": "pixels", "shape": [40, 784], "datatype": "INT32", "data": [v for row in rows for v in row]}
            ]
        }
        assert post(port, v2, "/v2/models/digits/infer")[0] == 200 and calls[1:] == [(40, 28, 28, 1)]
        singles = [post(port, {"instances": [row]})[2]["predictions"][0] for row in rows[:8]]
    assert calls[2:] == [(1, 28, 28, 1)] * 8
    assert np.allclose(v1["predictions"][:8], singles, atol=1e-5)  # batching changes no answer


def test_a_body_over_the_limit_gets_its_400_whole_while_the_client_is_still_sending(predictor):
    with serving(predictor) as server:
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=60)
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nContent-Length: 9000000\r\n\r\n" + b"[" * 65536)
        # unread bytes at close would make the kernel reset the connection, and the answer could be lost
        status, body, _ = until_closed(sock)
    assert status == 400 and body == {"error": "body of 9000000 bytes, at most 8388608"}


@pytest.mark.parametrize(
    "request_line, status, error",
    [
        (b"GARBAGE\r\n\r\n", 400, "Bad request syntax ('GARBAGE')"),
        (b"PUT /v1/models/digits HTTP/1.0\r\n\r\n", 405, "Unsupported method ('PUT')"),
    ],
)
def test_a_malformed_request_gets_a_4xx_with_one_json_line(predictor, request_line, status, error):
    with serving(predictor) as server:
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=60)
        sock.sendall(request_line)
        assert until_closed(sock)[:2] == (status, {"error": error})


def test_a_closed_connection_is_drained_only_briefly(predictor):
    """The drain before closing (LINGER_S) is bounded: a client that keeps the connection open after its
    answer does not keep the worker."""
    with serving(predictor, workers=1, waiting=1) as server:
        port = server.server_address[1]
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(b"POST /nowhere HTTP/1.0\r\nContent-Length: 10\r\n\r\n")  # 404, body never sent
        start = time.monotonic()
        assert until_closed(sock)[0] == 404
        assert time.monotonic() - start < LINGER_S + SLACK_S
        assert post(port, one_row())[0] == 200
