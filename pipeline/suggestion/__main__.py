"""`python -m pipeline.suggestion [--port 6789]`: the command katib-config's `asha`
entry runs (deploy/katib-config/asha.yaml). Logs one line per call to stderr and
stops cleanly on SIGTERM (the pod's end) or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pipeline.errors import UserError
from pipeline.suggestion.server import DEFAULT_PORT, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.suggestion", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default %(default)s)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        running = start(args.port, args.host)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.set())
    logging.info("asha suggestion service listening on %s:%d", args.host, running.port)
    stop.wait()
    logging.info("stopping: health NOT_SERVING, calls in flight get 5 s")
    running.stop()
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
