"""A stand-in trial: a real program whose output is driven by its flags.

    python tests/fake_trial.py --x=0.3 --y=2 [--epochs=N] [--mode=ok|crash|hang|nan|silent|json|slow]
        [--metric=accuracy] [--file=PATH] [--sleep=S] [--pidfile=PATH] [--crash-once=PATH]

Each epoch prints `epoch=E accuracy=... loss=...` where accuracy is a quadratic
in x and y (best at x=0.5, y=3) that grows with the epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--x", type=float, default=0.0)
    p.add_argument("--y", type=float, default=0.0)
    p.add_argument("--cat", default="a")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--mode", default="ok")
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--file", default=None, help="write metrics here (TEXT, or JSON with --mode=json)")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per epoch")
    p.add_argument("--pidfile", default=None, help="append our pid here (orphan checks)")
    p.add_argument("--crash-once", default=None, help="crash when this file does not exist, then create it")
    p.add_argument("--score", type=float, default=None, help="fixed score instead of the quadratic")
    p.add_argument("--scores", default=None, help="a,b,c: the n-th run (counted in --counter) scores the n-th")
    p.add_argument("--counter", default=None)
    args, _unknown = p.parse_known_args(argv)
    if args.scores and args.counter:
        n = os.path.getsize(args.counter) if os.path.exists(args.counter) else 0  # one byte a run
        with open(args.counter, "a") as f:
            f.write("x")
        scores = [float(v) for v in args.scores.split(",")]
        args.score = scores[min(n, len(scores) - 1)]
    if args.pidfile:
        with open(args.pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    if args.crash_once and not os.path.exists(args.crash_once):
        open(args.crash_once, "w").close()
        print("crashing once", file=sys.stderr)
        return 3
    if args.mode == "crash":
        print("Traceback: boom", file=sys.stderr)
        return 1
    if args.mode == "hang":
        while True:
            time.sleep(1)
    base = args.score if args.score is not None else 1.0 - (args.x - 0.5) ** 2 - 0.1 * (args.y - 3) ** 2
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.file, "a")) if args.file else sys.stdout
        for epoch in range(1, args.epochs + 1):
            acc = base - 0.1 / epoch
            if args.mode == "silent":
                print(f"epoch {epoch} done", flush=True)
            elif args.mode == "nan":
                print(f"epoch={epoch} {args.metric}=nan loss=nan", file=out, flush=True)
            elif args.mode == "json":
                print(
                    json.dumps({"epoch": str(epoch), args.metric: str(acc), "loss": str(1 - acc)}), file=out, flush=True
                )
            else:
                print(f"epoch={epoch} {args.metric}={acc:.6f} loss={1 - acc:.6f}", file=out, flush=True)
            if args.sleep:
                time.sleep(args.sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def experiment(
    name: str = "fake",
    algorithm: str = "random",
    settings: dict | None = None,
    parameters: list | None = None,
    objective: dict | None = None,
    max_trials: int | None = 4,
    parallel: int = 2,
    max_failed: int | None = 3,
    args: list[str] | None = None,
    early_stopping: dict | None = None,
    collector: dict | None = None,
    job_spec: dict | None = None,
    trial_parameters: list | None = None,
) -> dict:
    """A small Katib Experiment whose trial runs this script (for tests). Counts are clipped to
    max_trials as Katib's validator demands (every run is linted first); mutate the dict for a bad one."""
    if max_trials is not None:
        parallel = min(parallel, max_trials)
        max_failed = None if max_failed is None else min(max_failed, max_trials)
    parameters = parameters or [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "y", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5"}},
    ]
    trial_parameters = trial_parameters or [{"name": p["name"], "reference": p["name"]} for p in parameters]
    command = (
        ["python", os.path.abspath(__file__)]
        + [f"--{tp['name']}=${{trialParameters.{tp['name']}}}" for tp in trial_parameters]
        + list(args or [])
    )
    spec = {
        "objective": objective
        or {"type": "maximize", "objectiveMetricName": "accuracy", "additionalMetricNames": ["loss"]},
        "algorithm": {
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in (settings or {}).items()],
        },
        "parallelTrialCount": parallel,
        "maxTrialCount": max_trials,
        "parameters": parameters,
        "trialTemplate": {
            "primaryContainerName": "training-container",
            "trialParameters": trial_parameters,
            "trialSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "backoffLimit": 0,
                    **(job_spec or {}),
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "training-container", "image": "x", "command": command}],
                        }
                    },
                },
            },
        },
    }
    if max_failed is not None:
        spec["maxFailedTrialCount"] = max_failed
    if early_stopping:
        spec["earlyStopping"] = early_stopping
    if collector:
        spec["metricsCollectorSpec"] = collector
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
