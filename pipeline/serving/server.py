"""`katib-digits serve`: the trained model behind KServe's V1 protocol, on this machine.

    GET  /                            -> the page: draw a digit, see the prediction (index.html)
    GET  /v1/models                   -> {"models": [name]}
    GET  /v1/models/<name>            -> {"name": ..., "ready": true}
    POST /v1/models/<name>:predict    {"instances": [...]} -> {"predictions": [[p0..p9], ...]}

An instance is one image: 784 pixels, or 28 rows of 28, or 28x28x1, each 0-255 (the
CSV's values). Bad requests get a 400 with a one-line reason and the server keeps
serving. A small standard-library server, not KServe's own ModelServer: kserve 0.21
pulls FastAPI, uvicorn, grpcio-tools and more into an environment already pinned by
TensorFlow and kfp, and these two routes need none of it.
"""
from __future__ import annotations

import json
import threading
from functools import lru_cache
from importlib import resources
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_INSTANCES = 256
MAX_BODY_BYTES = 8 << 20


# The page's own policy: inline script and style, requests to this server only, nothing from elsewhere.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data:; base-uri 'none'; form-action 'none'")


@lru_cache(maxsize=1)
def page() -> bytes:
    """The drawing page (pipeline/serving/index.html, package data)."""
    return resources.files("pipeline.serving").joinpath("index.html").read_bytes()


class BadRequest(ValueError):
    """What is wrong with a request, in one line (HTTP 400)."""


def instances_to_pixels(body: Any, max_instances: int = MAX_INSTANCES):
    """The request's instances as a float32 array [N, 28, 28, 1]; BadRequest names the first problem."""
    import numpy as np

    if not isinstance(body, dict) or "instances" not in body:
        raise BadRequest('expected a JSON object with "instances": a list of images')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list of images')
    if len(instances) > max_instances:
        raise BadRequest(f"{len(instances)} instances, at most {max_instances} per request")
    images = []
    for i, instance in enumerate(instances):
        try:
            pixels = np.asarray(instance, dtype="float64")
        except (TypeError, ValueError):
            raise BadRequest(f"instance {i}: not an array of numbers") from None
        if pixels.size != 784 or pixels.shape not in ((784,), (28, 28), (28, 28, 1)):
            raise BadRequest(f"instance {i}: shape {list(pixels.shape)}, expected 784 pixels, [28, 28] or "
                             "[28, 28, 1]")
        if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
            raise BadRequest(f"instance {i}: pixel values must be 0-255 (found {pixels.min():g} to "
                             f"{pixels.max():g})")
        images.append(pixels.reshape(28, 28, 1))
    return np.stack(images).astype("float32")


class Predictor:
    """The model (an ensemble averaged, as `predict` does); one prediction at a time."""

    def __init__(self, model_path: str | Path, name: str):
        from pipeline.serving.export import serving_model

        self.name = name
        self.model = serving_model(model_path)
        self.lock = threading.Lock()

    def predict(self, pixels) -> list[list[float]]:
        with self.lock:
            return self.model.predict(pixels, verbose=0).astype(float).tolist()


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8080,
                max_instances: int = MAX_INSTANCES, quiet: bool = False) -> ThreadingHTTPServer:
    """The HTTP server (not started): `serve_forever()` it, `shutdown()` it."""
    model_path = f"/v1/models/{predictor.name}"

    class Handler(BaseHTTPRequestHandler):
        server_version = "katib-digits"

        def _send(self, status: int, payload: dict[str, Any] | bytes, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            if not quiet:
                super().log_message(format, *args)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8",
                           {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})
            elif self.path.rstrip("/") == model_path:
                self._send(HTTPStatus.OK, {"name": predictor.name, "ready": True})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(HTTPStatus.OK, {"models": [predictor.name]})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}; try {model_path}"})

        def do_POST(self):  # noqa: N802
            if self.path != f"{model_path}:predict":
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}; POST {model_path}:predict"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    raise BadRequest(f"body of {length} bytes, at most {MAX_BODY_BYTES}")
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise BadRequest(f"not JSON: {exc}") from None
                pixels = instances_to_pixels(body, max_instances)
            except BadRequest as exc:
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            self._send(HTTPStatus.OK, {"predictions": predictor.predict(pixels)})

    return ThreadingHTTPServer((host, port), Handler)
