"""HTTP load on a model server: V1 request bodies of real test rows, N clients POSTing them for S seconds
(and at most M requests), and a server process's memory and threads read from /proc."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.paths import SAMPLE
from bench.stats import percentile, significant


def request_bodies(batch: int, rows: int = 500) -> list[bytes]:
    """V1 bodies of `batch` real test rows each (the sample's test.csv.gz, 784 pixels a row), encoded once."""
    import csv
    import gzip

    with gzip.open(SAMPLE / "test.csv.gz", "rt") as fh:
        reader = csv.reader(fh)
        next(reader)  # the header
        pixels = [[int(v) for v in row] for _, row in zip(range(rows), reader, strict=False)]  # the first `rows`
    return [json.dumps({"instances": pixels[i : i + batch]}).encode() for i in range(0, len(pixels) - batch + 1, batch)]


def load(
    port: int,
    bodies: list[bytes],
    clients: int,
    seconds: float,
    max_requests: int,
    path: str = "/v1/models/digits:predict",
    timeout: float = 30.0,
) -> dict:
    """`clients` threads POSTing `bodies` in turn, a new connection each (the server speaks HTTP/1.0), until
    `seconds` have passed or `max_requests` have been sent. Every answer's status and latency, every failure."""
    import collections
    import http.client
    import threading

    lock, sent = threading.Lock(), [0]
    answers: list[tuple[int, float]] = []
    failures: collections.Counter = collections.Counter()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        mine, i = [], k
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            body, i = bodies[i % len(bodies)], i + clients
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            t0 = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                mine.append((answer.status, time.perf_counter() - t0))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failures[type(e).__name__] += 1
            finally:
                connection.close()
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 10)
    wall = time.perf_counter() - t0
    latencies = [seconds for _, seconds in answers]

    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(1000 * value, 1)

    return {
        "clients": clients,
        "seconds": seconds,
        "max_requests": max_requests,
        "wall_s": round(wall, 2),
        "requests": sent[0],
        "answered": len(answers),
        "requests_per_s": significant(len(answers) / wall),
        "statuses": dict(sorted(collections.Counter(status for status, _ in answers).items())),
        "failures": dict(failures),
        "latency_ms": {"p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99), "max": ms(1.0)},
    }


def proc_status(pid: int) -> dict[str, int]:
    """The process's resident memory (now and its peak, MiB) and threads, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024),
        "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024),
        "threads": int(fields["Threads"]),
    }
