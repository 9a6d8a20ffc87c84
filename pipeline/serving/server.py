"""`katib-digits serve`: the trained model behind KServe's V1 protocol and the V2 / Open
Inference Protocol (REST), and a page to draw a digit, on this machine.

    GET  /                            -> the page: draw a digit, see the prediction (index.html)
    GET  /v1/models                   -> {"models": [name]}
    GET  /v1/models/<name>            -> {"name": ..., "ready": true}
    POST /v1/models/<name>:predict    {"instances": [...]} -> {"predictions": [[p0..p9], ...]}
    GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>, /v2/models/<name>/ready
    POST /v2/models/<name>/infer      {"inputs": [{"name", "shape": [n, 784], "datatype", "data"}]}
                                      -> {"model_name", "outputs": [{"name": "probabilities",
                                          "shape": [n, 10], "datatype": "FP32", "data": [...]}]}

An image is 784 pixels, or 28 rows of 28, or 28x28x1, each 0-255 (the CSV's values); V2's
shape is [n, 784], [n, 28, 28] or [n, 28, 28, 1], its data flat (row-major) or nested. Bad
requests get a 400 with a one-line reason and the server keeps serving. A request's images go
to the model in one call.

Under load: a fixed pool of `workers` threads handles requests; up to `waiting` more accepted
connections wait for one, in arrival order; beyond that a connection gets 503 with Retry-After.
Each connection has `request_timeout` seconds to send its whole request (a deadline, not an
idle timer, so trickling bytes buys no time), then gets 408 and is closed.

A small standard-library server, not KServe's own ModelServer: kserve 0.21 pulls FastAPI,
uvicorn, grpcio-tools and more into an environment already pinned by TensorFlow and kfp, and
these routes need none of it (docs/serving.md).
"""

from __future__ import annotations

import io
import json
import math
import queue
import socket
import threading
import time
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

MAX_INSTANCES = 256
MAX_BODY_BYTES = 8 << 20
# The model answers one call at a time (Predictor.lock): more workers only overlap reading and parsing
# requests with it, and a fixed number keeps a thousand clients from meaning a thousand threads.
WORKERS = 8
WAITING = 64  # connections accepted beyond the busy workers; one more gets 503
REQUEST_TIMEOUT = 10.0  # seconds to send one whole request: 8 MB at 1 MB/s, far more than 256 images need
RETRY_AFTER_S = 1
BUSY_READ_S = 1.0  # a refused connection's time to send its headers (so the 503 can be answered and read)
LINGER_S = 1.0  # a connection closed with its request unread is drained this long first


# The page's own policy: inline script and style, requests to this server only, nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)


@lru_cache(maxsize=1)
def page() -> bytes:
    """The drawing page (pipeline/serving/index.html, package data)."""
    return resources.files("pipeline.serving").joinpath("index.html").read_bytes()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("katib-digits")
    except PackageNotFoundError:  # run from the sources without an install
        return "0+unknown"


class BadRequest(ValueError):
    """What is wrong with a request, in one line (HTTP 400)."""


class RequestTimeout(Exception):
    """The request did not arrive whole before its deadline (HTTP 408). Not a TimeoutError: http.server
    swallows those and closes the connection without an answer."""


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under one deadline for the whole request: a per-read timeout would start again with
    every byte a slow client trickles in."""

    def __init__(self, sock: socket.socket, seconds: float):
        self.sock, self.deadline = sock, time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout
        self.sock.settimeout(left)
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            raise RequestTimeout from None


def _linger(sock: socket.socket, seconds: float = LINGER_S) -> None:
    """Stop writing, then read what the client still sends, briefly: closing a socket with unread bytes makes
    the kernel send a reset, and the client can lose the answer (a 4xx or 503) before it reads it."""
    try:
        sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:  # the client is gone, or the time is up
        pass


def images_to_pixels(images: list, what: str = "instance"):
    """Images (each 784 pixels, 28x28 or 28x28x1, 0-255) as a float32 array [N, 28, 28, 1]."""
    import numpy as np

    checked = []
    for i, image in enumerate(images):
        try:
            pixels = np.asarray(image, dtype="float64")
        except (TypeError, ValueError):
            raise BadRequest(f"{what} {i}: not an array of numbers") from None
        if pixels.size != 784 or pixels.shape not in ((784,), (28, 28), (28, 28, 1)):
            raise BadRequest(f"{what} {i}: shape {list(pixels.shape)}, expected 784 pixels, [28, 28] or [28, 28, 1]")
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
            raise BadRequest(f"{what} {i}: pixel values must be 0-255 (found {pixels.min():g} to {pixels.max():g})")
        checked.append(pixels.reshape(28, 28, 1))
    return np.stack(checked).astype("float32")


def instances_to_pixels(body: Any, max_instances: int = MAX_INSTANCES):
    """V1: the request's instances as a float32 array [N, 28, 28, 1]; BadRequest names the first problem."""
    if not isinstance(body, dict) or "instances" not in body:
        raise BadRequest('expected a JSON object with "instances": a list of images')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list of images')
    if len(instances) > max_instances:
        raise BadRequest(f"{len(instances)} instances, at most {max_instances} per request")
    return images_to_pixels(instances)


# V2 (Open Inference Protocol): the one input tensor, the one output tensor.
V2_INPUT, V2_OUTPUT = "pixels", "probabilities"
V2_SHAPES = ([784], [28, 28], [28, 28, 1])
V2_INTEGER_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
V2_TYPES = V2_INTEGER_TYPES | {"FP16", "FP32", "FP64"}


def infer_to_pixels(body: Any, max_instances: int = MAX_INSTANCES):
    """V2: the request's one input tensor as a float32 array [N, 28, 28, 1]; BadRequest names the problem."""
    import numpy as np

    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise BadRequest('expected a JSON object with "inputs": a list of one tensor')
    if len(body["inputs"]) != 1:
        raise BadRequest(f'{len(body["inputs"])} input tensors, expected one ("{V2_INPUT}")')
    tensor = body["inputs"][0]
    if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
        raise BadRequest('the input tensor needs "name", "shape", "datatype" and "data"')
    shape, datatype = tensor["shape"], tensor["datatype"]
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(type(d) is int for d in shape)
        or shape[1:] not in V2_SHAPES
        or shape[0] < 1
    ):
        raise BadRequest(f"shape {shape}: expected [n, 784], [n, 28, 28] or [n, 28, 28, 1] with n >= 1")
    if shape[0] > max_instances:
        raise BadRequest(f"{shape[0]} images, at most {max_instances} per request")
    if datatype not in V2_TYPES:
        raise BadRequest(f"datatype {datatype!r}: expected a number type ({', '.join(sorted(V2_TYPES))})")
    try:
        data = np.asarray(tensor["data"], dtype="float64")
    except (TypeError, ValueError):
        raise BadRequest('"data" is not an array of numbers') from None
    if data.size != math.prod(shape):
        raise BadRequest(f"data has {data.size} values, shape {shape} needs {math.prod(shape)}")
    if datatype in V2_INTEGER_TYPES and np.isfinite(data).all() and (data != data.round()).any():
        raise BadRequest(f"datatype {datatype}: the data has values that are not integers")
    for output in body.get("outputs") or []:
        if not isinstance(output, dict) or output.get("name") != V2_OUTPUT:
            raise BadRequest(f'requested output {output!r}: the only output is "{V2_OUTPUT}"')
    return images_to_pixels(list(data.reshape(shape[0], 784)), "image")


def saved_model_dir(path: str | Path) -> Path | None:
    """The SavedModel `path` names: the folder itself when it holds saved_model.pb, or, as TF Serving
    reads a model folder (`export --out`, KServe's /mnt/models), its highest numbered version; else None."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        if versions:
            return max(versions, key=lambda p: int(p.name))
    return None


class Predictor:
    """The model: a Keras model or the folder `train` wrote (an ensemble averaged, as `predict` does), or
    a SavedModel `export` wrote (the highest version, as TF Serving loads it); one prediction at a time."""

    def __init__(self, model_path: str | Path, name: str):
        self.name = name
        self.lock = threading.Lock()
        self.saved_model = saved_model_dir(model_path)
        if self.saved_model is not None:
            import tensorflow as tf

            from pipeline.serving.export import SIGNATURE

            signature = tf.saved_model.load(str(self.saved_model)).signatures[SIGNATURE]
            self._predict = lambda pixels: next(iter(signature(tf.constant(pixels)).values())).numpy()
        else:
            from pipeline.serving.export import serving_model

            model = serving_model(model_path)
            # one step for the whole batch (predict() would cut it into steps of 32)
            self._predict = lambda pixels: model.predict_on_batch(pixels)

    def predict(self, pixels) -> list[list[float]]:
        """The probabilities of all `pixels` [N, 28, 28, 1], from one model call."""
        with self.lock:
            return self._predict(pixels).astype(float).tolist()


class BoundedHTTPServer(HTTPServer):
    """HTTP with a fixed pool of `workers` threads and at most `waiting` accepted connections waiting for one;
    a connection beyond those gets `busy_handler` (503) from a thread of its own. The accepting thread only
    queues, so a slow client never holds it."""

    request_queue_size = 128  # the listen backlog: a burst of connects waits to be accepted instead of failing

    def __init__(self, address, handler, busy_handler, workers: int = WORKERS, waiting: int = WAITING):
        super().__init__(address, handler)
        self.max_waiting = waiting
        self.in_progress, self._count = 0, threading.Lock()  # connections the workers hold now
        self.waiting: queue.SimpleQueue = queue.SimpleQueue()
        self.refused: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [
            threading.Thread(
                target=self._work, args=(self.waiting, handler), daemon=True, name=f"katib-digits-worker-{i}"
            )
            for i in range(workers)
        ]
        self.threads.append(
            threading.Thread(
                target=self._work, args=(self.refused, busy_handler), daemon=True, name="katib-digits-busy"
            )
        )
        for thread in self.threads:
            thread.start()

    def process_request(self, request, client_address):
        # Only this thread adds to the queues, so their sizes never run over the limit.
        if self.waiting.qsize() < self.max_waiting:
            self.waiting.put((request, client_address))
        elif self.refused.qsize() < self.max_waiting:
            self.refused.put((request, client_address))
        else:  # far beyond the limit: closed without an answer rather than queued without bound
            self.shutdown_request(request)

    def _work(self, jobs: queue.SimpleQueue, handler) -> None:
        counted = jobs is self.waiting
        while (job := jobs.get()) is not None:
            request, client_address = job
            if counted:
                with self._count:
                    self.in_progress += 1
            try:
                handler(request, client_address, self)
            except OSError:  # the client went away
                pass
            except Exception:  # noqa: BLE001 - socketserver's contract: any error of a request goes to handle_error
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                if counted:
                    with self._count:
                        self.in_progress -= 1

    def server_close(self) -> None:
        super().server_close()
        for jobs, threads in ((self.waiting, len(self.threads) - 1), (self.refused, 1)):
            while True:  # connections never handled are closed, not left to the workers
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self.shutdown_request(job[0])
            for _ in range(threads):
                jobs.put(None)


def make_server(
    predictor: Predictor,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_instances: int = MAX_INSTANCES,
    quiet: bool = False,
    workers: int = WORKERS,
    waiting: int = WAITING,
    request_timeout: float = REQUEST_TIMEOUT,
) -> BoundedHTTPServer:
    """The HTTP server (not started; its workers are): `serve_forever()` it, `shutdown()` and
    `server_close()` it."""
    model_path, v2_path = f"/v1/models/{predictor.name}", f"/v2/models/{predictor.name}"
    routes: dict[str, dict[str, Any]] = {
        "/v1/models": {"models": [predictor.name]},
        model_path: {"name": predictor.name, "ready": True},
        "/v2": {"name": "katib-digits", "version": package_version(), "extensions": []},
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        v2_path: {
            "name": predictor.name,
            "versions": ["1"],
            "platform": "tensorflow",
            "inputs": [{"name": V2_INPUT, "datatype": "FP32", "shape": [-1, 784]}],
            "outputs": [{"name": V2_OUTPUT, "datatype": "FP32", "shape": [-1, 10]}],
        },
        f"{v2_path}/ready": {"name": predictor.name, "ready": True},
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "katib-digits"
        default_request_version = "HTTP/1.0"  # so that a refusal of a garbled request line still has a status line
        seconds = request_timeout  # to send the whole request

        def setup(self):
            super().setup()
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.seconds))
            self.read_whole = False  # set once the request, body included, has been read

        def handle(self):
            self.requestline, self.request_version = "", "HTTP/1.0"
            # None until a request line is read, as http.server's own parse_request sets it; typeshed says str
            self.command = None  # type: ignore[assignment]
            try:
                super().handle()
            except RequestTimeout:
                self.close_connection = True
                self._send(
                    HTTPStatus.REQUEST_TIMEOUT, {"error": f"the request did not arrive whole within {self.seconds:g} s"}
                )

        def finish(self):
            super().finish()
            if not self.read_whole:
                _linger(self.connection)

        def send_error(self, code, message=None, explain=None):
            # http.server's own refusals (a malformed request line, an unknown method) as one JSON line too;
            # an unknown method is the client's mistake: 405, not http.server's 501
            headers = {}
            if code == HTTPStatus.NOT_IMPLEMENTED:
                code, headers = HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, POST"}
            self.close_connection = True
            self._send(code, {"error": message or HTTPStatus(code).phrase}, headers=headers)

        def _send(
            self,
            status: int,
            payload: dict[str, Any] | bytes,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.connection.settimeout(self.seconds)  # a client that does not read cannot hold the thread either
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # http.server's signature
            if not quiet:
                super().log_message(format, *args)

        def _body(self) -> Any:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
            if length < 0 or length > MAX_BODY_BYTES:
                raise BadRequest(f"body of {length} bytes, at most {MAX_BODY_BYTES}")
            data = self.rfile.read(length)
            self.read_whole = len(data) == length
            try:
                return json.loads(data or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"not JSON: {exc}") from None

        def do_GET(self):  # http.server's naming
            self.read_whole = (self.headers.get("Content-Length") or "0") == "0"
            path = self.path.rstrip("/") or "/"
            if path in ("/", "/index.html"):
                self._send(
                    HTTPStatus.OK,
                    page(),
                    "text/html; charset=utf-8",
                    {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"},
                )
            elif path in routes:
                self._send(HTTPStatus.OK, routes[path])
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}; try {model_path} or {v2_path}"})

        def do_POST(self):
            if self.path not in (f"{model_path}:predict", f"{v2_path}/infer"):
                self._send(
                    HTTPStatus.NOT_FOUND,
                    {"error": f"no route {self.path}; POST {model_path}:predict or {v2_path}/infer"},
                )
                return
            v2 = self.path.endswith("/infer")
            try:
                body = self._body()
                pixels = infer_to_pixels(body, max_instances) if v2 else instances_to_pixels(body, max_instances)
            except BadRequest as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            probabilities = predictor.predict(pixels)
            if not v2:
                self._send(HTTPStatus.OK, {"predictions": probabilities})
                return
            answer = {
                "model_name": predictor.name,
                "outputs": [
                    {
                        "name": V2_OUTPUT,
                        "shape": [len(probabilities), 10],
                        "datatype": "FP32",
                        "data": [p for row in probabilities for p in row],
                    }
                ],
            }
            if isinstance(body.get("id"), str):
                answer["id"] = body["id"]
            self._send(HTTPStatus.OK, answer)

    class Busy(Handler):
        """The answer to a connection beyond the workers and the waiting: 503 once its headers are in."""

        seconds = min(request_timeout, BUSY_READ_S)

        def parse_request(self):
            if super().parse_request():
                self.close_connection = True
                self._send(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": f"busy ({workers} in progress, {waiting} waiting); retry after {RETRY_AFTER_S} s"},
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            return False  # answered: no do_* method runs, the body is drained unread

    return BoundedHTTPServer((host, port), Handler, Busy, workers, waiting)
