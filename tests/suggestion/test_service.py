"""The asha service over real gRPC on loopback, with a client that plays Katib v0.19's
suggestion controller (tests/suggestion/katib_controller.py): request numbers, trial lists
with summary observations, the exact-count rule, a 60 s deadline on every call, retries,
health checks, bad settings, and a restart of the service mid-experiment."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as api, katib_api_pb2_grpc as api_grpc

from pipeline.suggestion.server import start
from pipeline.suggestion.service import HEALTH_SERVICE, Aborted, AshaService, InProcess
from tests.conftest import REPO
from tests.suggestion.katib_controller import TIMEOUT_S, Controller, FakeTrial, asha_experiment, convert_experiment

pytestmark = pytest.mark.process


@pytest.fixture
def server():
    running = start(port=0, host="127.0.0.1")
    yield running
    running.stop(grace=0)


def stub(port: int) -> api_grpc.SuggestionStub:
    return api_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def accuracy(trial: FakeTrial) -> str:
    """A made-up but fixed val_accuracy: each configuration has a quality, more epochs help."""
    key = {k: v for k, v in trial.assignments.items() if k != "epochs"}
    quality = int(hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:8], 16) / 16**8
    return f"{0.8 + 0.15 * quality + 0.01 * math.log(int(trial.assignments['epochs'])):.4f}"


def step(controller: Controller, client, parallel: int = 3, max_trials: int = 30) -> list[FakeTrial]:
    """One reconcile: ask for the free slots (capped by maxTrialCount), then the oldest running trial
    ends (every 7th fails; the 5th has no metrics and drops out of the list, as ConvertTrials does)."""
    running = [t for t in controller.trials if t.condition == "Running"]
    want = min(parallel - len(running), max_trials - len(controller.trials))
    new = []
    if want > 0:
        request = controller.request(want)
        reply = client.GetSuggestions(request, timeout=TIMEOUT_S)
        new = controller.accept(request, reply)
    running = [t for t in controller.trials if t.condition == "Running"]
    if running:
        t = running[0]
        n = controller.trials.index(t) + 1
        t.condition, t.value = (
            ("Failed", None) if n % 7 == 0 else ("MetricsUnavailable", None) if n == 5 else ("Succeeded", accuracy(t))
        )
    return new


def run(client, steps: int, controller: Controller | None = None) -> Controller:
    controller = controller or Controller(asha_experiment())
    for _ in range(steps):
        step(controller, client)
    return controller


def test_health_answers_serving_for_the_name_katibs_probes_use(server):
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    # The ignores: types-grpcio-health-checking's HealthStub lacks the Check its generated __init__ sets.
    reply = health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=TIMEOUT_S)  # type: ignore[attr-defined]
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="some.other.Service"), timeout=TIMEOUT_S)  # type: ignore[attr-defined]
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_experiment_played_like_katib_promotes_and_always_answers_the_exact_count(server):
    client = stub(server.port)
    controller = Controller(asha_experiment())
    started = time.monotonic()
    for _ in range(40):
        step(controller, client)  # accept() raises on a reply with another count, as the controller rejects it
    assert time.monotonic() - started < TIMEOUT_S
    assert len(controller.trials) == 30 and controller.suggestion_count == 30
    by_config: dict[str, list[FakeTrial]] = {}
    for t in controller.trials:
        by_config.setdefault(repr(sorted((k, v) for k, v in t.assignments.items() if k != "epochs")), []).append(t)
    ladders = sorted([int(t.assignments["epochs"]) for t in ts] for ts in by_config.values())
    assert [1, 3] in ladders and [1, 3, 9] in ladders  # promoted twice: the same hyperparameters, more epochs
    assert all(ladder == [1, 3, 9][: len(ladder)] for ladder in ladders)  # rung by rung, each once
    failed = [t for t in controller.trials if t.condition in ("Failed", "MetricsUnavailable")]
    assert len(failed) >= 3
    for t in failed:  # never promoted: nothing above the rung where it failed
        ladder = by_config[repr(sorted((k, v) for k, v in t.assignments.items() if k != "epochs"))]
        assert max(int(x.assignments["epochs"]) for x in ladder) == int(t.assignments["epochs"])


def test_a_retried_call_gets_the_same_answer(server):
    """Katib retries a call whose reply it could not store; the answer must not move."""
    client = stub(server.port)
    controller = run(client, 12)
    request = controller.request(2)
    first = client.GetSuggestions(request, timeout=TIMEOUT_S)
    assert client.GetSuggestions(request, timeout=TIMEOUT_S) == first


def test_a_restart_mid_experiment_loses_no_decision(tmp_path):
    """The whole run with the service stopped and replaced (a new process) half-way equals the run
    without a restart: nothing the service decides lives in its memory."""
    reference = start(port=0, host="127.0.0.1")
    try:
        expected = run(stub(reference.port), 40)
    finally:
        reference.stop(grace=0)
    first = start(port=0, host="127.0.0.1")
    controller = run(stub(first.port), 18)
    request = controller.request(2)
    before = stub(first.port).GetSuggestions(request, timeout=TIMEOUT_S)
    first.stop(grace=0)
    with service_process() as port:
        client = stub(port)
        assert client.GetSuggestions(request, timeout=TIMEOUT_S) == before
        run(client, 22, controller)
    assert [(t.assignments, t.condition, t.value) for t in controller.trials] == [
        (t.assignments, t.condition, t.value) for t in expected.trials
    ]


def test_a_trial_missing_from_a_lagging_list_is_not_promoted_twice(server):
    """The controller's trial list can lag behind its Suggestion; the issued promotions come back
    through the algorithm settings Katib round-trips."""
    client = stub(server.port)
    controller = Controller(asha_experiment())
    for i in range(3):
        controller.trials.append(FakeTrial(f"t{i}", dict(asha_experiment_config(i)), "Succeeded", f"0.9{i}"))
    controller.suggestion_count = 3
    request = controller.request(1)
    (promotion,) = client.GetSuggestions(request, timeout=TIMEOUT_S).parameter_assignments
    reply = client.GetSuggestions(request, timeout=TIMEOUT_S)
    controller.accept(request, reply)
    controller.trials.pop()  # the new trial is not in the controller's list yet
    (after,) = client.GetSuggestions(controller.request(1), timeout=TIMEOUT_S).parameter_assignments
    assert {a.name: a.value for a in promotion.assignments}["epochs"] == "3"
    assert {a.name: a.value for a in after.assignments}["epochs"] == "1"


def asha_experiment_config(i: int) -> dict[str, str]:
    return {
        "learning-rate": f"0.00{i + 1}",
        "lr-decay": "0.9",
        "batch-size": "64",
        "optimizer": "adam",
        "conv-filters": "32",
        "dense-units": "128",
        "dropout": "0.3",
        "augment": "0.1",
        "arch": "pool",
        "epochs": "1",
    }


BAD = [
    ({"eta": "1"}, "eta"),
    ({"eta": "two"}, "eta"),
    ({"min_resource": "0"}, "min_resource"),
    ({"max_resource": "1"}, "max_resource"),
    ({"max_resource": "27"}, "max_resource"),
    ({"resource_name": "steps"}, "resource_name"),
    ({"random_state": "-3"}, "random_state"),
    ({"base_sampler": "cmaes"}, "base_sampler"),
    ({"n_brackets": "2"}, "n_brackets"),
]


@pytest.mark.parametrize("settings, name", BAD, ids=[n + "=" + list(s.values())[0] for s, n in BAD])
def test_validate_rejects_each_bad_setting_by_name(server, settings, name):
    """INVALID_ARGUMENT is what Katib's controller turns into a failed Experiment with our message."""
    client = stub(server.port)
    request = api.ValidateAlgorithmSettingsRequest(experiment=convert_experiment(asha_experiment(**settings)))
    with pytest.raises(grpc.RpcError) as err:
        client.ValidateAlgorithmSettings(request, timeout=TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name in (err.value.details() or "") and "spec.algorithm.algorithmSettings" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:  # and GetSuggestions refuses the same settings
        client.GetSuggestions(Controller(asha_experiment(**settings)).request(1), timeout=TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and name in (err.value.details() or "")


def test_validate_accepts_the_shipped_experiment(server):
    request = api.ValidateAlgorithmSettingsRequest(experiment=convert_experiment(asha_experiment()))
    assert (
        stub(server.port).ValidateAlgorithmSettings(request, timeout=TIMEOUT_S) == api.ValidateAlgorithmSettingsReply()
    )


def test_bad_requests_get_a_clear_error(server):
    client = stub(server.port)
    other = asha_experiment()
    other["spec"]["algorithm"]["algorithmName"] = "random"
    with pytest.raises(grpc.RpcError) as err:
        client.GetSuggestions(Controller(other).request(1), timeout=TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "asha" in (err.value.details() or "")
    request = Controller(asha_experiment()).request(2)
    request.total_request_number = 1
    with pytest.raises(grpc.RpcError) as err:
        client.GetSuggestions(request, timeout=TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "total_request_number" in (
        err.value.details() or ""
    )


def test_in_process_the_same_servicer_raises_what_grpc_would_answer():
    with pytest.raises(Aborted) as err:
        AshaService().GetSuggestions(Controller(asha_experiment(eta="1")).request(1), InProcess())
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "eta" in str(err.value)


class service_process:
    """`python -m pipeline.suggestion --port P` as Katib's Deployment runs it (a new process)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.suggestion", "--port", str(self.port), "--host", "127.0.0.1"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # what Katib's readiness probe does
            try:
                # HealthStub's Check: set by its generated __init__, missing from types-grpcio-health-checking
                health.Check(health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=1)  # type: ignore[attr-defined]
                return self.port
            except grpc.RpcError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.log = self.proc.communicate(timeout=30)[1]
        assert self.proc.returncode == 0, self.log


def test_the_process_logs_each_call_and_stops_cleanly_on_sigterm():
    process = service_process()
    with process as port:
        controller = Controller(asha_experiment())
        request = controller.request(3)
        controller.accept(request, stub(port).GetSuggestions(request, timeout=TIMEOUT_S))
    lines = process.log.splitlines()
    assert any("GetSuggestions digits-asha: 0 trial(s) seen, 3 requested (total 3)" in line for line in lines)
    assert "stopped" in lines[-1]
