"""Hyperband: Katib v0.19's own suggestion service (its Python `service.py`, imported from
the Go module cache where `go mod download` put Katib's source) against our
pipeline.local.hyperband / pipeline.katib.hyperband, request by request: how many
trials it answers, at which resource, which trials it promotes, the settings it
writes back, and when it raises. Then the controller's side: the shipped
hyperband.yaml runs to its end on Katib and the local run stops where Katib hangs."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from kubeflow.katib import katib_api_pb2 as api

from pipeline.katib.algorithms import HyperbandPlan
from pipeline.katib.experiment import Param
from pipeline.local.hyperband import Hyperband, NotReady, SeenTrial
from tests.oracle.conftest import ORACLE_DIR, hypothesis_settings

pytestmark = pytest.mark.process


@pytest.fixture(scope="session")
def katib_service():
    """Katib's HyperbandService, from Katib v0.19.0's source, in its own process (katib_hyperband_worker.py):
    a function from a GetSuggestionsRequest (the kubeflow-katib stubs: the same api.v1.beta1 wire format) to
    its reply, or None where the service raised."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        ran = subprocess.run(
            [go, "mod", "download", "-json", "github.com/kubeflow/katib"],
            cwd=ORACLE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        import json

        root = Path(json.loads(ran.stdout)["Dir"])
    except Exception as exc:  # noqa: BLE001 - any failure here is a test failure, said plainly
        pytest.fail(f"cannot locate Katib v0.19.0's source through `go mod download` in oracle/: {exc}", pytrace=False)
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("katib_hyperband_worker.py")), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None and stdout is not None  # started with pipes
    if stdout.readline().strip() != "ready":
        pytest.fail("Katib's hyperband service did not start (see the worker's stderr above)", pytrace=False)

    def call(request):
        stdin.write(base64.b64encode(request.SerializeToString()).decode() + "\n")
        stdin.flush()
        kind, _, payload = stdout.readline().strip().partition(" ")
        if kind == "ok":
            return api.GetSuggestionsReply.FromString(base64.b64decode(payload))
        assert kind == "raised", f"Katib's hyperband worker answered {kind!r}"
        return None

    yield call
    stdin.close()
    worker.wait(timeout=30)


PARAMS = [Param("x", "double", 0.0, 1.0), Param("epochs", "int", 1.0, 81.0)]


def _request(settings, trials, request, maximize):
    spec = api.ExperimentSpec(
        algorithm=api.AlgorithmSpec(
            algorithm_name="hyperband",
            algorithm_settings=[api.AlgorithmSetting(name=k, value=v) for k, v in settings.items()],
        ),
        objective=api.ObjectiveSpec(type=api.MAXIMIZE if maximize else api.MINIMIZE, objective_metric_name="acc"),
        parameter_specs=api.ExperimentSpec.ParameterSpecs(
            parameters=[
                api.ParameterSpec(
                    name="x", parameter_type=api.DOUBLE, feasible_space=api.FeasibleSpace(min="0", max="1")
                ),
                api.ParameterSpec(
                    name="epochs", parameter_type=api.INT, feasible_space=api.FeasibleSpace(min="1", max="81")
                ),
            ]
        ),
    )
    protos = []
    for i, t in enumerate(trials):
        protos.append(
            api.Trial(
                name=f"t{i}",
                spec=api.TrialSpec(
                    parameter_assignments=api.TrialSpec.ParameterAssignments(
                        assignments=[api.ParameterAssignment(name=k, value=v) for k, v in t.assignments.items()]
                    )
                ),
                status=api.TrialStatus(
                    start_time=f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                    condition=api.TrialStatus.TrialConditionType.SUCCEEDED
                    if t.succeeded
                    else api.TrialStatus.TrialConditionType.RUNNING,
                    observation=api.Observation(metrics=[api.Metric(name="acc", value=t.objective)]),
                ),
            )
        )
    return api.GetSuggestionsRequest(
        experiment=api.Experiment(name="hb", spec=spec), trials=protos, current_request_number=request
    )


@st.composite
def schedules(draw):
    r_l = draw(st.sampled_from([2, 3, 4, 8, 9, 10, 27, 81]))
    eta = draw(st.sampled_from([2, 3, 4, 9]))
    requests = draw(st.lists(st.integers(1, 12), min_size=1, max_size=12))
    return r_l, eta, requests, draw(st.booleans()), draw(st.integers(0, 2**31))


@hypothesis_settings(400)
@given(schedules())
def test_hyperband_service_answers_as_katib_does(katib_service, case):
    r_l, eta, requests, maximize, seed = case
    import random

    rnd = random.Random(seed)
    ours = Hyperband(PARAMS, maximize, HyperbandPlan(float(r_l), eta, "epochs"), seed=seed)
    settings = {"resource_name": "epochs", "r_l": str(r_l), "eta": str(eta)}
    trials: list[SeenTrial] = []
    for request in requests:
        # a running trial finishes now and then (Katib asks again as trials end)
        trials = [
            t if t.succeeded or rnd.random() < 0.6 else SeenTrial(t.start, True, t.objective, t.assignments)
            for t in trials
        ]
        reply = katib_service(_request(settings, trials, request, maximize))
        try:
            state, answer = ours.suggest(request, trials)
        except NotReady:
            state, answer = None, None
        assert (reply is None) == (answer is None), (case, request, reply)
        if reply is None:
            continue
        assert state is not None and answer is not None  # both answered (the assert above)
        theirs = [{a.name: a.value for a in p.assignments} for p in reply.parameter_assignments]
        assert len(theirs) == len(answer)
        assert [t["epochs"] for t in theirs] == [a["epochs"] for a in answer]
        their_state = {s.name: s.value for s in reply.algorithm.algorithm_settings}
        if theirs and their_state:
            assert int(float(their_state["current_s"])) == state.current_s
            assert int(float(their_state["current_i"])) == state.current_i
            assert int(float(their_state["evaluating_trials"])) == state.evaluating
            assert float(int(float(their_state["r"]))) == state.r  # read back with int(float(...))
            assert int(float(their_state["n"])) == state.n
        if (
            answer
            and "x" in answer[0]
            and len(trials)
            and any(a["x"] in {t.assignments["x"] for t in trials} for a in answer)
        ):
            assert [t["x"] for t in theirs] == [a["x"] for a in answer]  # the same trials promoted, in order
        if len(answer) == request:  # the controller accepts: both keep the new settings
            settings = their_state or settings
            ours.state = state
            for a in answer:
                trials.append(SeenTrial(float(len(trials)), rnd.random() < 0.7, f"{rnd.random():.3f}", dict(a)))


def test_shipped_hyperband_ends_on_katib_and_locally():
    """experiments/hyperband.yaml avoids Katib v0.19's hyperband stall: it runs to its end there (10 trials:
    9 at 1 epoch, the best at 9), and the linter stays quiet about it."""
    from pipeline.katib.algorithms import hyperband_plan
    from pipeline.katib.hyperband import katib_run
    from pipeline.lint import load
    from tests.conftest import REPO

    exp = load(REPO / "experiments" / "hyperband.yaml")
    plan = hyperband_plan(exp.algorithm_settings)
    assert plan is not None
    run = katib_run(plan.r_l, plan.eta, exp.parallel_trial_count, exp.max_trial_count)
    assert not run.stalled
    assert run.resources == (1,) * 9 + (9,)
