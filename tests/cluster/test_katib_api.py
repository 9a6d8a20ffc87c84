"""The Katib backend against a local HTTP server that plays the Kubernetes API
for experiments.kubeflow.org, with recorded real Experiment objects
(tests/cluster/fixtures/katib/, see PROVENANCE.md). The real kubernetes client (its
REST layer, its error handling, its deserialization) talks to it over HTTP."""

from __future__ import annotations

import json
import re
import socket
import threading
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from pipeline.cluster import katib_api as kb
from pipeline.errors import UserError
from pipeline.image import IMAGE
from pipeline.katib.result import parse_result

FIXTURES = Path(__file__).parent / "fixtures" / "katib"
PATH_RE = re.compile(r"^/apis?(?:/kubeflow\.org/v1beta1|/v1)/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?$")
FAST = kb.RetryPolicy(attempts=3, backoff_s=0.01)
NS = "kubeflow-user-example-com"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"experiment-{name}.json").read_text())


def status(code: int, reason: str, message: str) -> tuple[int, dict]:
    # The v1 Status body the API server sends with every error.
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


# (API group, client method) of every entry of the table: the only client methods katib_api may call.
TABLE = {(c.group, c.method) for c in kb.API_CALLS.values()}


class OnlyTheTable:
    """A kubernetes client API object as katib_api gets it: a method API_CALLS names for this API group is
    handed through and recorded in `used`; any other method is recorded in `outside` and refused. katib_api
    wraps or swallows some errors (a failed trial listing only says so), so the kube fixture checks `outside`
    after each test rather than trusting the AssertionError to come through."""

    def __init__(self, real: Any, group: str, used: set, outside: list):
        self._real, self._group, self._used, self._outside = real, group, used, outside

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._real, attr)
        if attr.startswith("_") or not callable(value):
            return value  # api_client and the like
        if (self._group, attr) not in TABLE:
            self._outside.append(f"{type(self._real).__name__}.{attr}")
            raise AssertionError(f"katib_api called {type(self._real).__name__}.{attr}, which API_CALLS lacks")
        self._used.add((self._group, attr))
        return value


class FakeKube:
    """Scripted answers per (HTTP method, plural, item?); the last one repeats.

    An answer is (code, body) or a fixture name; a fixture answer is the
    recorded object renamed to the requested/created Experiment, the way the
    API server answers for the object it stores."""

    def __init__(self):
        self.requests: list[dict] = []
        self.unrouted: list[str] = []  # requests to paths the fake does not serve: none may come
        self.used: set[tuple[str, str]] = set()  # (group, client method) katib_api called, all in API_CALLS
        self.outside: list[str] = []  # client methods it called that API_CALLS does not name
        self.script: dict[tuple[str, str, bool], list] = {}
        self.stored: dict[str, dict] = {}  # name -> body POSTed
        self.api: Any = None  # the CustomObjectsApi on the fake server (set by the kube fixture)

    def on(self, method: str, plural: str, item: bool, *answers) -> FakeKube:
        self.script[(method, plural, item)] = list(answers)
        return self

    def answer(self, method: str, ns: str, plural: str, name: str | None, body: dict | None):
        self.requests.append({"method": method, "plural": plural, "name": name, "body": body, "ns": ns})
        queue = self.script.get((method, plural, name is not None))
        if not queue and method == "GET" and name is None:
            return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}  # nothing there yet
        if not queue:
            return status(404, "NotFound", f'{plural}.kubeflow.org "{name}" not found')
        ans = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(ans):
            ans = ans(self, name, body)
        if isinstance(ans, str):
            obj = fixture(ans)
            if method == "POST":
                assert body is not None  # a POST sends its object
                self.stored[body["metadata"]["name"]] = body
                name = body["metadata"]["name"]
                obj["metadata"]["labels"] = body["metadata"].get("labels")
            elif name in self.stored:
                obj["metadata"]["labels"] = self.stored[name]["metadata"].get("labels")
            obj["metadata"].update(name=name, namespace=ns)
            return 201 if method == "POST" else 200, obj
        return ans


@pytest.fixture
def kube(monkeypatch):
    """The fake API server, and katib_api's client objects on it held to API_CALLS: the CustomObjectsApi
    passed in, and the CoreV1Api it makes for pods; any other client API class it made would fail."""
    fake = FakeKube()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlparse(self.path)
            m = PATH_RE.match(url.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if not m:
                fake.unrouted.append(f"{self.command} {url.path}")
                code, payload = status(404, "NotFound", f"no route {url.path}")
            else:
                code, payload = fake.answer(self.command, m[1], m[2], m[3], body)
                fake.requests[-1]["query"] = parse_qs(url.query)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    fake.api = OnlyTheTable(client.CustomObjectsApi(client.ApiClient(config)), kb.GROUP, fake.used, fake.outside)
    core = client.CoreV1Api

    def refused(name):
        def make(*args, **kwargs):
            fake.outside.append(name)
            raise AssertionError(f"katib_api made a client.{name}; API_CALLS names only CustomObjectsApi/CoreV1Api")

        return make

    for name in dir(client):
        if name.endswith("Api") and isinstance(getattr(client, name), type) and name != "CoreV1Api":
            monkeypatch.setattr(client, name, refused(name))
    monkeypatch.setattr(
        client, "CoreV1Api", lambda api_client=None: OnlyTheTable(core(api_client), "", fake.used, fake.outside)
    )
    yield fake
    server.shutdown()
    server.server_close()
    assert not fake.outside, f"client calls outside API_CALLS (so outside the RBAC check): {fake.outside}"
    assert not fake.unrouted, f"requests to no Katib or pod path: {fake.unrouted}"


def experiment() -> dict:
    """What the user submits: the recorded object without server-owned fields."""
    exp = fixture("created")
    exp["metadata"] = {"name": "darts-example", "namespace": "somewhere-else"}
    return exp


def run(kube, **kwargs):
    kwargs = {"timeout_s": 30, "poll_s": 0.01, "retry": FAST, **kwargs}
    return kb.run_on_katib(experiment(), NS, api=kube.api, **kwargs)


def sent(kube, method=None):
    return [r for r in kube.requests if method is None or r["method"] == method]


# --- the happy path ----------------------------------------------------------------


def test_success_returns_the_final_object_as_kubectl_shows_it(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", "running", "succeeded")
    result = run(kube)

    name = sent(kube, "POST")[0]["body"]["metadata"]["name"]
    expected = fixture("succeeded")["status"]
    assert result["metadata"]["name"] == name
    assert result["status"] == expected  # untouched JSON, camelCase, as `kubectl get -o json`
    assert len([r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]) == 3
    assert not sent(kube, "DELETE")
    best = parse_result(result).optimal  # what the retrain step reads
    assert best.name == "darts-example-n4fpnxlm"
    assert set(best.assignments) == {"algorithm-settings", "search-space", "num-layers"}


def test_create_body_is_renamed_namespaced_labelled_and_clean(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "succeeded")
    src = experiment()
    src["status"] = {"conditions": []}
    src["metadata"]["resourceVersion"] = "1"
    kb.run_on_katib(src, NS, api=kube.api, poll_s=0.01, retry=FAST)
    body = sent(kube, "POST")[0]["body"]
    assert sent(kube, "POST")[0]["ns"] == NS
    assert body["metadata"]["namespace"] == NS
    assert re.fullmatch(r"darts-example-[a-z0-9]{5}", body["metadata"]["name"])
    assert body["metadata"]["labels"][kb.RUN_ID_LABEL]
    assert "status" not in body and "resourceVersion" not in body["metadata"]
    assert body["spec"] == src["spec"]
    assert src["metadata"]["name"] == "darts-example"  # the caller's dict is not modified


@pytest.mark.parametrize("base", ["darts-example", "x" * 60, "tpe-", "7up", "a"])
def test_unique_names_fit_katibs_rule(base):
    names = {kb.unique_name(base) for _ in range(20)}
    assert len(names) > 1
    for name in names:
        assert len(name) <= 40
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name


@pytest.mark.parametrize("delete_status", [200, 404])
def test_delete_after_success(kube, delete_status):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "succeeded")
    kube.on("DELETE", "experiments", True, (delete_status, {"kind": "Status", "status": "Success"}))
    result = run(kube, delete_after=True)
    deletes = sent(kube, "DELETE")
    assert [d["name"] for d in deletes] == [result["metadata"]["name"]]


# --- the Experiment fails or does not finish -------------------------------------------


FAILED_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {"name": "darts-example-n4fpnxlm", "labels": {"katib.kubeflow.org/experiment": "darts-example"}},
    "status": {
        "conditions": [
            {"type": "Created", "status": "True", "reason": "TrialCreated", "message": "Trial is created"},
            {"type": "Running", "status": "False", "reason": "TrialRunning", "message": "Trial is running"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "TrialFailed. Job reason: BackoffLimitExceeded",
                "message": "Trial has failed. Job message: Job has reached the specified backoff limit",
            },
        ]
    },
}


def test_failed_experiment_raises_with_its_conditions_and_failed_trials(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", "failed")
    kube.on(
        "GET",
        "trials",
        False,
        (200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList", "metadata": {}, "items": [FAILED_TRIAL]}),
    )
    with pytest.raises(kb.KatibExperimentFailed) as err:
        run(kube)
    exc = err.value
    assert isinstance(exc, UserError)
    assert exc.conditions[-1]["reason"] == "ExperimentFailed"
    assert "Failed=True (ExperimentFailed: Experiment has failed because max failed count has reached)" in str(exc)
    assert "darts-example-n4fpnxlm: TrialFailed. Job reason: BackoffLimitExceeded" in str(exc)
    name = sent(kube, "POST")[0]["body"]["metadata"]["name"]
    assert sent(kube, "GET")[-1]["query"]["labelSelector"] == [f"katib.kubeflow.org/experiment={name}"]


def test_failed_experiment_is_deleted_when_asked_and_error_kept(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "failed")
    kube.on("GET", "trials", False, status(403, "Forbidden", "trials is forbidden"))
    kube.on("DELETE", "experiments", True, (200, {"kind": "Status", "status": "Success"}))
    with pytest.raises(kb.KatibExperimentFailed, match=r"trials not readable: trials is forbidden"):
        run(kube, delete_after=True)
    assert len(sent(kube, "DELETE")) == 1


def test_timeout_raises_with_the_last_conditions_and_leaves_it_running(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    now = [0.0]  # a clock that advances only when the backend sleeps: the poll count is exact, load or not
    with pytest.raises(kb.KatibTimeout) as err:
        run(kube, timeout_s=0.3, poll_s=0.05, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    msg = str(err.value)
    assert "did not finish within 0.3s" in msg
    assert "Running=True (ExperimentRunning: Experiment is running)" in msg
    assert "kubectl delete experiment darts-example-" in msg
    assert err.value.conditions[-1]["type"] == "Running"
    assert not sent(kube, "DELETE")
    polls = [r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]
    assert 6 <= len(polls) <= 8  # one per 0.05 s poll within 0.3 s


def test_experiment_deleted_while_waiting(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", status(404, "NotFound", "not found"))
    with pytest.raises(kb.KatibExperimentFailed, match="was deleted while we waited.*Running=True"):
        run(kube)


def test_optimal_trial_of_a_running_experiment_is_an_error():
    with pytest.raises(UserError, match=r"status.currentOptimalTrial.parameterAssignments: empty"):
        parse_result(fixture("running"), "running.json")


# --- API errors and retries ------------------------------------------------------------


def test_403_is_not_retried_and_names_the_missing_verb(kube):
    kube.on(
        "POST",
        "experiments",
        False,
        status(
            403,
            "Forbidden",
            'experiments.kubeflow.org is forbidden: User "system:serviceaccount:ns:default" '
            'cannot create resource "experiments" in API group "kubeflow.org"',
        ),
    )
    with pytest.raises(kb.KatibApiError) as err:
        run(kube)
    assert err.value.status == 403
    assert len(kube.requests) == 1
    assert "RBAC verb 'create' on experiments.kubeflow.org" in str(err.value)
    assert f"kubectl -n {NS} apply -f deploy/rbac.yaml" in str(err.value)  # the Role has no namespace of its own


def test_404_on_create_says_katib_is_missing(kube):
    kube.on("POST", "experiments", False, status(404, "NotFound", "the server could not find the requested resource"))
    with pytest.raises(kb.KatibApiError, match=r"is Katib installed \(CRD experiments.kubeflow.org\)"):
        run(kube)
    assert len(kube.requests) == 1


def test_webhook_rejection_is_reported_verbatim(kube):
    msg = (
        'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: '
        "spec.maxTrialCount: Invalid value: 0: must be greater than 0"
    )
    kube.on("POST", "experiments", False, status(400, "BadRequest", msg))
    with pytest.raises(kb.KatibApiError, match="Katib rejected the Experiment") as err:
        run(kube)
    assert msg in str(err.value)
    assert len(kube.requests) == 1


def test_409_takes_a_new_name(kube):
    foreign = fixture("created")  # someone else's object: no run-id label of ours
    kube.on("POST", "experiments", False, status(409, "AlreadyExists", "already exists"), "created")
    kube.on("GET", "experiments", True, (200, foreign), "succeeded")
    result = run(kube)
    posts = [r["body"]["metadata"]["name"] for r in sent(kube, "POST")]
    assert len(posts) == 2 and posts[0] != posts[1]
    assert result["metadata"]["name"] == posts[1]


def test_409_after_a_lost_response_adopts_our_own_object(kube):
    # The first create reached the server, its answer did not: 503, retry -> 409.
    def stored_then_503(fake, name, body):
        fake.stored[body["metadata"]["name"]] = body
        return status(503, "ServiceUnavailable", "etcd timeout")

    kube.on("POST", "experiments", False, stored_then_503, status(409, "AlreadyExists", "already exists"))
    kube.on("GET", "experiments", True, "created", "succeeded")
    result = run(kube)
    posts = sent(kube, "POST")
    assert len(posts) == 2 and posts[0]["body"]["metadata"]["name"] == posts[1]["body"]["metadata"]["name"]
    assert result["metadata"]["name"] == posts[0]["body"]["metadata"]["name"]


def test_409_every_time_is_a_clear_error(kube):
    kube.on("POST", "experiments", False, status(409, "AlreadyExists", "already exists"))
    kube.on("GET", "experiments", True, (200, fixture("created")))
    with pytest.raises(kb.KatibApiError, match=r"taken 3 times \(HTTP 409\)"):
        run(kube)
    assert len(sent(kube, "POST")) == 3


def test_5xx_is_retried_with_backoff(kube):
    sleeps: list[float] = []
    kube.on("POST", "experiments", False, status(500, "InternalError", "webhook timeout"), "created")
    kube.on(
        "GET",
        "experiments",
        True,
        status(503, "ServiceUnavailable", "x"),
        status(503, "ServiceUnavailable", "x"),
        "succeeded",
    )
    run(kube, sleep=sleeps.append, retry=kb.RetryPolicy(attempts=3, backoff_s=0.5))
    assert len(sent(kube, "POST")) == 2 and experiment_polls(kube) == 3
    assert sleeps == [0.5, 0.5, 1.0]  # create retry; then two doubling retries of the poll


def test_5xx_that_persists_fails_after_the_retries(kube):
    kube.on("POST", "experiments", False, status(503, "ServiceUnavailable", "apiserver is shutting down"))
    with pytest.raises(kb.KatibApiError, match=r"HTTP 503.*apiserver is shutting down") as err:
        run(kube)
    assert err.value.status == 503
    assert len(kube.requests) == FAST.attempts


def test_unreachable_api_server_fails_after_the_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.retries = False  # urllib3's own silent retries off: ours are the ones under test
    api = client.CustomObjectsApi(client.ApiClient(config))
    sleeps: list[float] = []
    with pytest.raises(kb.KatibApiError, match="cannot reach the Kubernetes API to create experiments"):
        kb.run_on_katib(experiment(), NS, api=api, retry=FAST, sleep=sleeps.append)
    assert len(sleeps) == FAST.attempts - 1


def test_no_credentials_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kb.KatibApiError, match="no Kubernetes credentials"):
        kb.run_on_katib(experiment(), NS, retry=FAST)


# --- the RBAC the backend needs is derived from the code ------------------------------------

GROUP_OF = {"experiments": "kubeflow.org", "trials": "kubeflow.org", "suggestions": "kubeflow.org", "pods": ""}
HTTP_VERB = {("POST", False): "create", ("GET", True): "get", ("GET", False): "list", ("DELETE", True): "delete"}


def take_every_path(kube) -> None:
    """One run that takes every path: look for this run's Experiment, 409 -> get -> create, poll while a
    trial runs (its Suggestion, its trials and pods), fail, list trials, delete."""
    kube.on("POST", "experiments", False, status(409, "AlreadyExists", "taken"), "created")
    kube.on("GET", "experiments", True, (200, fixture("created")), "running", "failed")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("DELETE", "experiments", True, (200, {"kind": "Status", "status": "Success"}))
    with pytest.raises(kb.KatibExperimentFailed):
        run(kube, delete_after=True, run_id="run-1")


def test_every_request_sent_is_covered_by_required_rbac(kube):
    take_every_path(kube)
    used = {
        (GROUP_OF[r["plural"]], r["plural"], HTTP_VERB[(r["method"], r["name"] is not None)]) for r in kube.requests
    }
    declared = {(group, plural, verb) for (group, plural), verbs in kb.required_rbac().items() for verb in verbs}
    assert used == declared


def test_the_public_functions_call_the_client_only_through_api_calls_and_use_every_entry(kube):
    """The kube fixture refuses, and reports, any client method or API class API_CALLS does not name; here a run
    that takes every path (as above) and stop_run reach every entry, so the table has none that is stale."""
    take_every_path(kube)
    kube.on("GET", "experiments", False, (200, {"kind": "List", "apiVersion": "v1", "items": [fixture("running")]}))
    assert kb.stop_run(NS, "run-1", api=kube.api, retry=FAST, log=lambda _: None)
    assert kube.used == TABLE


def delete_them_all(session, name):
    session.api.delete_collection_namespaced_custom_object(kb.GROUP, kb.VERSION, session.namespace, "experiments")


def delete_its_jobs(session, name):
    client.BatchV1Api(session.api.api_client).delete_collection_namespaced_job(session.namespace)


@pytest.mark.parametrize(
    "bypass, reported",
    [
        (delete_them_all, "CustomObjectsApi.delete_collection_namespaced_custom_object"),
        (delete_its_jobs, "BatchV1Api"),
    ],
)
def test_the_guard_sees_a_client_call_that_bypasses_the_table(kube, monkeypatch, bypass, reported):
    """The check can fail: a delete that called the client itself, not through API_CALLS, is refused and reported."""
    monkeypatch.setattr(kb._Session, "delete", bypass)
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "succeeded")
    with pytest.raises(AssertionError, match="API_CALLS"):
        run(kube, delete_after=True)
    assert kube.outside == [reported]
    kube.outside.clear()  # seen: the fixture's own check after the test would fail on it
    assert not sent(kube, "DELETE")


def test_fixtures_are_what_the_real_client_deserializes():
    # CustomObjectsApi declares response_type 'object': the client hands the JSON through untouched.
    api_client = client.ApiClient()
    for name in ("created", "running", "succeeded", "failed"):
        obj = fixture(name)

        class Resp:
            data = json.dumps(obj)

        assert api_client.deserialize(Resp, "object") == obj
        assert obj["kind"] == "Experiment" and obj["apiVersion"] == "kubeflow.org/v1beta1"


# --- progress, trial pods that can never run, trials that outlive the end ---------------------------
# Trial and pod objects below are written by hand in the API's shape (no recorded ones exist here);
# the pods go through the real client's V1Pod deserialization on their way to the code.

RUNNING_TRIAL = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Trial",
    "metadata": {
        "name": "darts-example-n4fpnxlm",
        "namespace": NS,
        "labels": {"katib.kubeflow.org/experiment": "darts-example"},
    },
    "status": {
        "conditions": [
            {"type": "Created", "status": "True", "reason": "TrialCreated"},
            {"type": "Running", "status": "True", "reason": "TrialRunning"},
        ]
    },
}


def pod(waiting=None, scheduled=None, collector=True, name="darts-example-n4fpnxlm-x7k2p"):
    labels = {"job-name": "darts-example-n4fpnxlm"}
    containers = [{"name": "training-container", "image": IMAGE}]
    if collector:
        labels["katib.kubeflow.org/trial"] = "darts-example-n4fpnxlm"
        containers.append({"name": "metrics-logger-and-collector", "image": "katib-file-metrics-collector"})
    status: dict[str, Any] = {"phase": "Pending" if waiting or scheduled else "Running", "conditions": []}
    if waiting:
        status["containerStatuses"] = [
            {
                "name": "training-container",
                "image": IMAGE,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}},
            }
        ]
    if scheduled:
        status["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": scheduled[0],
                "lastTransitionTime": scheduled[1],
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": containers},
        "status": status,
    }


def pods(*items):
    return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(items)}


def test_every_poll_says_how_the_trials_stand(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", "running", "succeeded")
    said: list[str] = []
    run(kube, log=said.append)
    assert said == [
        f"tune: {NS}/{said[0].split('/')[1].split(':')[0]}: Running, 1 trials: 1 Running",
        f"tune: {NS}/{said[0].split('/')[1].split(':')[0]}: Succeeded, 1 trials: 1 Succeeded",
    ]


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_an_image_that_cannot_be_pulled_fails_at_once_with_the_pods_reason(kube, reason):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("GET", "pods", False, pods(pod(waiting=(reason, f'Back-off pulling image "{IMAGE}"'))))
    with pytest.raises(kb.KatibExperimentFailed, match=rf"cannot pull image '{re.escape(IMAGE)}' \({reason}"):
        run(kube, timeout_s=30)
    polls = [r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]
    assert len(polls) == 1  # the first poll, not the 30 s timeout
    (pod_query,) = [r["query"] for r in sent(kube, "GET") if r["plural"] == "pods"]
    assert pod_query["labelSelector"] == ["job-name in (darts-example-n4fpnxlm)"]


def test_unschedulable_fails_after_the_grace_period_only():
    now = 1_800_000_000.0
    from datetime import datetime

    def at(seconds_ago):
        return datetime.fromtimestamp(now - seconds_ago, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    message = "0/1 nodes are available: 1 Insufficient cpu."
    assert kb.pod_problem(pod(scheduled=(message, at(10))), "StdOut", now) is None
    problem = kb.pod_problem(pod(scheduled=(message, at(400))), "StdOut", now)
    assert problem is not None
    assert "cannot be scheduled (0/1 nodes are available: 1 Insufficient cpu.) for 400s" in problem


def test_a_namespace_without_the_injection_label_fails_with_the_fix(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("GET", "pods", False, pods(pod(collector=False)))
    with pytest.raises(
        kb.KatibExperimentFailed,
        match=r"lacks the label katib.kubeflow.org/metrics-collector-"
        r"injection=enabled.*kubectl label namespace",
    ):
        run(kube)
    assert kb.pod_problem(pod(collector=False), "Push", 0) is None  # Push trials get no sidecar by design


def test_a_healthy_pod_is_no_problem():
    assert kb.pod_problem(pod(), "StdOut", 0) is None


def test_succeeded_while_katib_lists_a_running_trial_waits_for_katibs_update(kube):
    """Katib keeps running trials after the end condition and, while it lists one as running, still
    updates the object (currentOptimalTrial included): the result is its object after that trial."""
    ended_busy = fixture("succeeded")
    ended_busy["status"].update(
        trialsRunning=1, runningTrialList=["darts-example-n4fpnxlm"], trialsSucceeded=0, succeededTrialList=None
    )
    ended_busy["status"]["currentOptimalTrial"]["bestTrialName"] = "an-earlier-best"
    done = trial("darts-example-n4fpnxlm", "Succeeded")
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, (200, ended_busy), (200, ended_busy), (200, ended_busy), "succeeded")
    # its own conditions say Succeeded one poll before Katib's object does: still Katib's update is awaited
    kube.on("GET", "trials", False, trials(trial("darts-example-n4fpnxlm", "Running")), trials(done))
    result = run(kube)
    assert result["status"]["currentOptimalTrial"]["bestTrialName"] == "darts-example-n4fpnxlm"
    assert len([r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]) == 4


def test_a_retried_step_waits_for_the_experiment_its_run_made(kube):
    mine = fixture("running")
    mine["metadata"].update(name="darts-example-ab12c", labels={kb.RUN_ID_LABEL: "run-1"})
    kube.on("GET", "experiments", False, (200, {"kind": "List", "apiVersion": "v1", "items": [mine]}))
    kube.on("GET", "experiments", True, "succeeded")
    said: list[str] = []
    result = run(kube, run_id="run-1", log=said.append)
    assert not sent(kube, "POST") and result["metadata"]["name"] == "darts-example-ab12c"
    (query,) = [r["query"] for r in sent(kube, "GET") if r["plural"] == "experiments" and not r["name"]]
    assert query["labelSelector"] == [f"{kb.RUN_ID_LABEL}=run-1"]
    assert "the step was retried" in said[0]


def test_stop_run_deletes_only_what_has_not_ended(kube):
    running, done = fixture("running"), fixture("succeeded")
    running["metadata"]["name"], done["metadata"]["name"] = "digits-tpe-aaaaa", "digits-tpe-bbbbb"
    kube.on("GET", "experiments", False, (200, {"kind": "List", "apiVersion": "v1", "items": [running, done]}))
    kube.on("DELETE", "experiments", True, (200, {"kind": "Status", "status": "Success"}))
    stopped = kb.stop_run(NS, "run-1", api=kube.api, retry=FAST, log=lambda _: None)
    assert stopped == ["digits-tpe-aaaaa"]
    assert [r["name"] for r in sent(kube, "DELETE")] == ["digits-tpe-aaaaa"]


# --- Katib v0.19's Trial, Suggestion and suggestion-pod objects, constructed in the shapes its controllers
# write (trial_controller_util.go, suggestion_controller.go, composer.go; not recorded from a cluster) --------

AT = "2026-01-05T10:00:00Z"
TRIAL_CONDITIONS = {  # trial_controller.go / trial_controller_util.go reasons and messages
    "Created": ("TrialCreated", "Trial is created"),
    "Running": ("TrialRunning", "Trial is running"),
    "Succeeded": ("TrialSucceeded", "Trial has succeeded"),
    "MetricsUnavailable": ("MetricsUnavailable", "Metrics are not available"),
    "Failed": ("TrialFailed", "Trial has failed"),
}


def trial(name: str, state: str, experiment: str = "darts-example") -> dict:
    """A Trial as Katib's trial controller leaves it in `state` (Pending: Created only)."""

    def cond(kind, status):
        reason, message = TRIAL_CONDITIONS[kind]
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": AT,
            "lastTransitionTime": AT,
        }

    conds = [cond("Created", "True")]
    if state == "Running":
        conds.append(cond("Running", "True"))
    elif state != "Pending":  # Mark...: Running set False, then the end condition
        conds += [cond("Running", "False"), cond(state, "True")]
    status: dict[str, Any] = {"startTime": AT, "conditions": conds}
    if state == "Succeeded":
        status["observation"] = {
            "metrics": [
                {"name": "Best-Genotype", "min": "unavailable", "max": "unavailable", "latest": "Genotype(normal=[])"}
            ]
        }
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"katib.kubeflow.org/experiment": experiment},
            "ownerReferences": [
                {
                    "apiVersion": "kubeflow.org/v1beta1",
                    "kind": "Experiment",
                    "name": experiment,
                    "uid": "3fbda962",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "Best-Genotype"},
            "primaryContainerName": "training-container",
        },
        "status": status,
    }


def trials(*items):
    return 200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList", "metadata": {}, "items": list(items)}


def suggestion(
    name: str,
    algorithm: str = "asha",
    ready: tuple[str, str, str] | None = None,
    failed: tuple[str, str] | None = None,
    early_stopping: str | None = None,
) -> dict:
    """The Suggestion Katib makes for Experiment `name` (same name, its labels, owned by it)."""
    conds = [
        {
            "type": "Created",
            "status": "True",
            "reason": "SuggestionCreated",
            "message": "Suggestion is created",
            "lastUpdateTime": AT,
            "lastTransitionTime": AT,
        }
    ]
    ready = ready or ("False", "DeploymentNotReady", "Deployment is not ready")
    conds.append(
        {
            "type": "DeploymentReady",
            "status": ready[0],
            "reason": ready[1],
            "message": ready[2],
            "lastUpdateTime": AT,
            "lastTransitionTime": AT,
        }
    )
    if failed:
        conds.append(
            {
                "type": "Failed",
                "status": "True",
                "reason": failed[0],
                "message": failed[1],
                "lastUpdateTime": AT,
                "lastTransitionTime": AT,
            }
        )
    spec = {
        "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": "eta", "value": "3"}]},
        "requests": 3,
        "resumePolicy": "Never",
    }
    if early_stopping:
        spec["earlyStopping"] = {"algorithmName": early_stopping}
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Suggestion",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {kb.RUN_ID_LABEL: "run-1"},
            "ownerReferences": [
                {
                    "apiVersion": "kubeflow.org/v1beta1",
                    "kind": "Experiment",
                    "name": name,
                    "uid": "3fbda962",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {"startTime": AT, "suggestionCount": 0, "conditions": conds},
    }


def suggestion_pod(
    experiment: str,
    algorithm: str = "asha",
    statuses: list[dict] | None = None,
    scheduled: tuple[str, str] | None = None,
) -> dict:
    """A pod of Katib's `<experiment>-<algorithm>` Deployment (util.SuggestionLabels), with its containers'
    statuses as the kubelet writes them."""
    deployment = f"{experiment}-{algorithm}"
    names = [s["name"] for s in statuses or []] or ["suggestion"]
    status: dict[str, Any] = {"phase": "Pending", "conditions": [], "containerStatuses": statuses or []}
    if scheduled:
        status["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": scheduled[0],
                "lastTransitionTime": scheduled[1],
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment}-6d9f8b7c5d-x2x9q",
            "namespace": NS,
            "labels": {
                "katib.kubeflow.org/deployment": deployment,
                "katib.kubeflow.org/experiment": experiment,
                "katib.kubeflow.org/suggestion": experiment,
                "sidecar.istio.io/inject": "false",
                "pod-template-hash": "6d9f8b7c5d",
            },
        },
        "spec": {"containers": [{"name": n, "image": IMAGE} for n in names]},
        "status": status,
    }


def waiting(
    container: str,
    image: str,
    reason: str,
    message: str,
    restarts: int = 0,
    last_exit: tuple[int, str, str] | None = None,
) -> dict:
    cs = {
        "name": container,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if last_exit:
        cs["lastState"] = {
            "terminated": {
                "exitCode": last_exit[0],
                "reason": last_exit[1],
                "message": last_exit[2],
                "startedAt": AT,
                "finishedAt": AT,
            }
        }
    return cs


def answer_suggestion(**kwargs):
    return lambda fake, name, body: (200, suggestion(name, **kwargs))


def answer_pods(**kwargs):
    def answer(fake, name, body):
        (created,) = fake.stored  # the suggestion pods of the one Experiment this run made
        return pods(suggestion_pod(created, **kwargs))

    return answer


def experiment_polls(kube) -> int:
    return len([r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]])


# --- item 3: a Suggestion whose service never starts fails the step at the first poll -------------------------


def test_a_suggestion_image_that_cannot_be_pulled_fails_at_the_first_poll_with_katibs_reason(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "created")
    kube.on("GET", "suggestions", True, answer_suggestion())
    kube.on(
        "GET",
        "pods",
        False,
        answer_pods(
            statuses=[
                waiting(
                    "suggestion",
                    IMAGE,
                    "ErrImagePull",
                    f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": not found',
                )
            ]
        ),
    )
    with pytest.raises(kb.KatibExperimentFailed) as err:
        run(kube, timeout_s=30)
    msg = str(err.value)
    assert "its Suggestion is DeploymentReady=False (DeploymentNotReady: Deployment is not ready)" in msg
    assert f"container suggestion cannot pull image '{IMAGE}' (ErrImagePull: rpc error" in msg
    assert "katib-config's runtime.suggestions image for algorithm 'asha'" in msg and "trial_image" not in msg
    assert experiment_polls(kube) == 1  # the first poll, not the 30 s timeout
    name = sent(kube, "POST")[0]["body"]["metadata"]["name"]
    (pod_query,) = [r["query"] for r in sent(kube, "GET") if r["plural"] == "pods"]
    assert pod_query["labelSelector"] == [f"katib.kubeflow.org/deployment={name}-asha"]  # <experiment>-<algorithm>


def test_a_crash_looping_suggestion_service_fails_with_its_exit_and_where_its_log_is(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    kube.on("GET", "suggestions", True, answer_suggestion())
    kube.on(
        "GET",
        "pods",
        False,
        answer_pods(
            statuses=[
                waiting(
                    "suggestion",
                    IMAGE,
                    "CrashLoopBackOff",
                    "back-off 40s restarting failed container=suggestion",
                    restarts=3,
                    last_exit=(1, "Error", "ModuleNotFoundError: No module named 'optuna'\n"),
                )
            ]
        ),
    )
    with pytest.raises(kb.KatibExperimentFailed) as err:
        run(kube, timeout_s=30)
    msg = str(err.value)
    assert (
        "container suggestion keeps crashing (CrashLoopBackOff, 3 restarts, last exit code 1 (Error: "
        "ModuleNotFoundError: No module named 'optuna'))" in msg
    )
    assert f"kubectl -n {NS} logs darts-example-" in msg and "-c suggestion --previous" in msg
    assert experiment_polls(kube) == 1


def test_an_early_stopping_image_that_cannot_be_pulled_names_katib_configs_early_stopping_entry():
    exp = "digits-medianstop-ab12c"
    problem = kb.suggestion_problem(
        suggestion(exp, "random", early_stopping="medianstop"),
        [
            suggestion_pod(
                exp,
                "random",
                statuses=[
                    {
                        "name": "suggestion",
                        "image": "suggestion-hyperopt:v0.19.0",
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": AT}},
                    },
                    waiting(
                        "early-stopping",
                        "earlystopping-medianstop:v0.19.0",
                        "ImagePullBackOff",
                        'Back-off pulling image "earlystopping-medianstop:v0.19.0"',
                    ),
                ],
            )
        ],
        0,
    )
    assert problem is not None
    assert "container early-stopping cannot pull image 'earlystopping-medianstop:v0.19.0' (ImagePullBackOff" in problem
    assert "katib-config's runtime.earlyStoppings image for 'medianstop'" in problem


def test_a_suggestion_still_starting_or_ready_is_no_problem():
    exp = "digits-asha-ab12c"
    creating = suggestion_pod(exp, statuses=[waiting("suggestion", IMAGE, "ContainerCreating", "")])
    assert kb.suggestion_problem(suggestion(exp), [creating], 0) is None
    assert kb.suggestion_problem(suggestion(exp), [], 0) is None  # the Deployment has no pod yet (AT is later)
    ready = suggestion(exp, ready=("True", "DeploymentReady", "Deployment is ready"))
    crashing = suggestion_pod(exp, statuses=[waiting("suggestion", "x:1", "CrashLoopBackOff", "back-off")])
    assert kb.suggestion_problem(ready, [crashing], 0) is None  # Katib's own condition decides
    assert kb.suggestion_problem(None, [crashing], 0) is None  # not made yet


def test_an_unschedulable_suggestion_pod_fails_after_the_grace_period():
    exp = "digits-asha-ab12c"
    message = "0/1 nodes are available: 1 Insufficient memory."
    stuck = suggestion_pod(exp, scheduled=(message, "2026-01-05T10:00:00Z"))
    from datetime import datetime

    t0 = datetime.fromisoformat("2026-01-05T10:00:00+00:00").timestamp()
    assert kb.suggestion_problem(suggestion(exp), [stuck], t0 + 60) is None
    assert (
        "suggestion pod digits-asha-ab12c-asha-6d9f8b7c5d-x2x9q cannot be scheduled (0/1 nodes are available: "
        "1 Insufficient memory.) for 400s" in (kb.suggestion_problem(suggestion(exp), [stuck], t0 + 400) or "")
    )


def test_a_suggestion_deployment_that_makes_no_pod_fails_after_the_grace_period():
    from datetime import datetime

    t0 = datetime.fromisoformat(AT.replace("Z", "+00:00")).timestamp()  # when DeploymentReady turned False
    assert kb.suggestion_problem(suggestion("digits-asha-ab12c"), [], t0 + 60) is None
    problem = kb.suggestion_problem(suggestion("digits-asha-ab12c"), [], t0 + 400)
    assert problem is not None
    assert "its Deployment digits-asha-ab12c-asha has made no pod in 400s" in problem
    assert f"kubectl -n {NS} describe replicaset -l katib.kubeflow.org/deployment=digits-asha-ab12c-asha" in problem


def test_a_failed_suggestion_is_named_in_the_experiments_failure(kube):
    failed = fixture("failed")
    cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    cond["message"] = "Suggestion has failed"  # experiment_controller.go, ReconcileSuggestions
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, (200, failed))
    kube.on(
        "GET",
        "suggestions",
        True,
        answer_suggestion(
            failed=("SuggestionFailed", "Validation failed: resource_name 'epoch' must be one of spec.parameters")
        ),
    )
    with pytest.raises(kb.KatibExperimentFailed) as err:
        run(kube)
    assert (
        "Failed=True (ExperimentFailed: Suggestion has failed); its Suggestion failed (SuggestionFailed: "
        "Validation failed: resource_name 'epoch' must be one of spec.parameters)" in str(err.value)
    )


# --- item 4: the end is Katib's terminal condition plus the trials' own conditions, not its counts -------------


def ended_with_a_frozen_pending_trial() -> dict:
    """Katib's object after the MetricsUnavailable race (maxTrialCount 2, parallel 2): m2kq7bvz ended
    MetricsUnavailable while n4fpnxlm ran; ReconcileTrials does not count it as completed (2 - 0 more
    wanted, 1 active) and created x9w8v7u6; when n4fpnxlm succeeded the end condition, which does count
    it, marked MaxTrialsReached with x9w8v7u6 pending. With no trial listed as running, Reconcile returns
    early from then on (experiment_controller.go): frozen."""
    obj = fixture("succeeded")
    obj["spec"].update(maxTrialCount=2, parallelTrialCount=2, maxFailedTrialCount=3)
    obj["status"].update(
        trials=3,
        trialsSucceeded=1,
        trialMetricsUnavailable=1,
        trialsPending=1,
        succeededTrialList=["darts-example-n4fpnxlm"],
        metricsUnavailableTrialList=["darts-example-m2kq7bvz"],
        pendingTrialList=["darts-example-x9w8v7u6"],
    )
    return obj


def test_an_extra_trial_pending_when_it_ended_does_not_freeze_the_end(kube):
    frozen = ended_with_a_frozen_pending_trial()
    done = [trial("darts-example-n4fpnxlm", "Succeeded"), trial("darts-example-m2kq7bvz", "MetricsUnavailable")]
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, (200, frozen))
    kube.on(
        "GET",
        "trials",
        False,
        trials(*done, trial("darts-example-x9w8v7u6", "Pending")),
        trials(*done, trial("darts-example-x9w8v7u6", "Running")),
        trials(*done, trial("darts-example-x9w8v7u6", "Succeeded")),
    )
    said: list[str] = []
    now = [0.0]
    result = run(
        kube,
        timeout_s=30,
        poll_s=1,
        log=said.append,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert experiment_polls(kube) == 3  # until the extra trial's own conditions say it ended
    assert result["status"] == frozen["status"]  # Katib's object, as it left it
    assert any("darts-example-x9w8v7u6 ended after Katib stopped updating the Experiment" in line for line in said)


def test_an_extra_trial_that_can_never_run_after_the_end_is_not_waited_for(kube):
    frozen = ended_with_a_frozen_pending_trial()
    extra = trial("darts-example-x9w8v7u6", "Pending")
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, (200, frozen))
    kube.on("GET", "trials", False, trials(trial("darts-example-n4fpnxlm", "Succeeded"), extra))
    kube.on(
        "GET",
        "pods",
        False,
        pods(pod(waiting=("ImagePullBackOff", 'Back-off pulling image "x"'), name="darts-example-x9w8v7u6-abcde")),
    )
    said: list[str] = []
    result = run(kube, log=said.append)
    assert experiment_polls(kube) == 1 and result["status"] == frozen["status"]
    assert any("not waiting for a trial that can never finish" in line for line in said)


def test_a_trial_still_running_after_the_end_is_named_when_the_time_is_up(kube):
    running = ended_with_a_frozen_pending_trial()
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, (200, running))
    kube.on("GET", "trials", False, trials(trial("darts-example-x9w8v7u6", "Running")))
    now = [0.0]
    with pytest.raises(kb.KatibTimeout, match=r"1 trial\(s\) still running after it ended: darts-example-x9w8v7u6"):
        run(kube, timeout_s=0.3, poll_s=0.1, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))


def test_trial_state_follows_katibs_order_of_conditions():
    assert [
        kb.trial_state(trial("t", s)) for s in ("Pending", "Running", "Succeeded", "MetricsUnavailable", "Failed")
    ] == ["Pending", "Running", "Succeeded", "MetricsUnavailable", "Failed"]


# --- the smaller item: an image error names the container that has it ---------------------------------------


def test_a_sidecar_image_error_blames_katibs_collector_not_trial_image():
    p = pod()
    p["status"]["containerStatuses"] = [
        {
            "name": "training-container",
            "image": IMAGE,
            "ready": False,
            "restartCount": 0,
            "state": {"running": {"startedAt": AT}},
        },
        waiting(
            "metrics-logger-and-collector",
            "file-metrics-collector:v0.19.0",
            "ImagePullBackOff",
            'Back-off pulling image "file-metrics-collector:v0.19.0"',
        ),
    ]
    problem = kb.pod_problem(p, "StdOut", 0, primary="training-container")
    assert problem is not None
    assert (
        "Katib's metrics collector (container metrics-logger-and-collector) cannot pull image "
        "'file-metrics-collector:v0.19.0'" in problem
    )
    assert (
        "trial_image does not set it: it is katib-config's runtime.metricsCollectors image for kind StdOut" in problem
    )
    p["status"]["containerStatuses"][1]["name"] = "init-data"  # another container of the trial template
    assert "trial_image sets only the primary container training-container" in (
        kb.pod_problem(p, "StdOut", 0, primary="training-container") or ""
    )


def test_the_primary_containers_image_error_still_points_at_trial_image():
    problem = kb.pod_problem(pod(waiting=("ErrImagePull", "not found")), "StdOut", 0, primary="training-container")
    assert problem is not None and problem.endswith("pass the image the cluster can pull (trial_image)")


# --- item 5: the Experiment can be owned by the tune step's pod -----------------------------------------------


def test_the_experiment_is_created_owned_by_the_given_pod(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "succeeded")
    owner = {"apiVersion": "v1", "kind": "Pod", "name": "katib-digits-x7-system-container-impl-123", "uid": "u-1"}
    run(kube, owner=owner)
    assert sent(kube, "POST")[0]["body"]["metadata"]["ownerReferences"] == [owner]
    kube.requests.clear()
    run(kube)
    assert "ownerReferences" not in sent(kube, "POST")[0]["body"]["metadata"]
