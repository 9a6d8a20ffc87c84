"""serve: `katib-digits serve` (its defaults, its own process) on loopback under load from N clients POSTing
real test rows: requests/s, latency percentiles, every status, the server's memory and threads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.loadgen import load, proc_status, request_bodies
from bench.paths import REPO, SAMPLE
from bench.process import run_trial

ABOUT = (
    "`katib-digits serve` under load on loopback: N clients POSTing real test rows (data/sample/test.csv.gz) "
    "for S seconds (and at most M requests); requests/s, latency percentiles, every status, the server's RSS "
    "and threads before, during and after"
)


def serve_model(out: Path, rows: int = 1000) -> Path:
    """A SavedModel of the trial's default model, as `katib-digits export` writes it for KServe. One epoch on
    the sample's first `rows` rows: the serving path's cost is the architecture's, not the weights'."""
    model, saved = out / "serve-model", out / "serve-saved-model"
    for folder in (model, saved):
        shutil.rmtree(folder, ignore_errors=True)
    run_trial(
        [
            "--data",
            str(SAMPLE / "train.csv.gz"),
            "--max-rows",
            str(rows),
            "--val-fraction",
            "0",
            "--epochs",
            "1",
            "--model-out",
            str(model),
        ],
        log=out / "serve-model.log",
    )
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "export", "--model", str(model), "--out", str(saved)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return saved


def measure(
    out: Path, clients: int, seconds: float, max_requests: int, batch: int = 1, model: Path | None = None
) -> dict:
    """`katib-digits serve` (its defaults, its own process) on loopback under `load`: warmed up with 20
    requests, then loaded; its memory and threads read before, every half second during, and after."""
    import signal
    import threading

    from pipeline.serving.server import REQUEST_TIMEOUT, WAITING, WORKERS

    model = model or serve_model(out)
    bodies = request_bodies(batch)
    log = out / "serve.log"
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model), "--port", "0"]
    with log.open("w") as err:
        server = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        )
    try:
        started = time.monotonic()
        while not (bound := re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())):
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit(f"benchmark: serve: the server did not start; see {log}")
            time.sleep(0.2)
        port = int(bound.group(1))
        warm = load(port, bodies, clients=1, seconds=120, max_requests=20)
        if warm["statuses"] != {200: 20}:
            raise SystemExit(f"benchmark: serve: the warm-up got {warm['statuses']} {warm['failures']}; see {log}")
        before, during, done = proc_status(server.pid), [], threading.Event()

        def watch() -> None:
            while not done.wait(0.5):
                during.append(proc_status(server.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        result = load(port, bodies, clients, seconds, max_requests)
        done.set()
        watcher.join()
        after = proc_status(server.pid)
    finally:
        server.send_signal(signal.SIGINT)  # serve's Ctrl-C
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {
        **result,
        "batch": batch,
        "model": str(model),
        "server": " ".join(["katib-digits", *command[3:]]),
        "server_limits": {"workers": WORKERS, "waiting": WAITING, "request_timeout_s": REQUEST_TIMEOUT},
        "rss_mib": {
            "before": before["rss_mib"],
            "max_during": max((d["rss_mib"] for d in during), default=after["rss_mib"]),
            "after": after["rss_mib"],
            "peak_since_start": after["peak_rss_mib"],
        },
        "threads": {
            "before": before["threads"],
            "max_during": max((d["threads"] for d in during), default=after["threads"]),
            "after": after["threads"],
        },
    }


def add_arguments(group) -> None:
    group.add_argument("--serve-clients", type=int, default=48, help="concurrent clients of the serve section")
    group.add_argument("--serve-seconds", type=float, default=30.0, help="how long the serve section loads the server")
    group.add_argument("--serve-max-requests", type=int, default=100_000, help="most requests it sends in all")
    group.add_argument("--serve-batch", type=int, default=1, help="test rows per request")
    group.add_argument(
        "--serve-model",
        type=Path,
        default=None,
        help="a SavedModel folder to serve (default: the trial's default model, one epoch on the sample)",
    )


def run(args, report: dict) -> dict:
    return measure(
        args.out, args.serve_clients, args.serve_seconds, args.serve_max_requests, args.serve_batch, args.serve_model
    )
