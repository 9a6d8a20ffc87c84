"""The Katib backend against a local HTTP server that plays the Kubernetes API
for experiments.kubeflow.org, with recorded real Experiment objects
(tests/cluster/fixtures/katib/, see PROVENANCE.md). The real kubernetes client (its
REST layer, its error handling, its deserialization) talks to it over HTTP."""
from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from pipeline.cluster import katib_api as kb
from pipeline.errors import UserError
from pipeline.katib.result import parse_result

FIXTURES = Path(__file__).parent / "fixtures" / "katib"
PATH_RE = re.compile(r"^/apis?(?:/kubeflow\.org/v1beta1|/v1)/namespaces/([^/]+)/([a-z]+)(?:/([^/]+))?$")
FAST = kb.RetryPolicy(attempts=3, backoff_s=0.01)
NS = "kubeflow-user-example-com"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"experiment-{name}.json").read_text())


def status(code: int, reason: str, message: str) -> tuple[int, dict]:
    # The v1 Status body the API server sends with every error.
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}


class FakeKube:
    """Scripted answers per (HTTP method, plural, item?); the last one repeats.

    An answer is (code, body) or a fixture name; a fixture answer is the
    recorded object renamed to the requested/created Experiment, the way the
    API server answers for the object it stores."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: dict[tuple[str, str, bool], list] = {}
        self.stored: dict[str, dict] = {}  # name -> body POSTed

    def on(self, method: str, plural: str, item: bool, *answers) -> "FakeKube":
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
                self.stored[body["metadata"]["name"]] = body
                name = body["metadata"]["name"]
                obj["metadata"]["labels"] = body["metadata"].get("labels")
            elif name in self.stored:
                obj["metadata"]["labels"] = self.stored[name]["metadata"].get("labels")
            obj["metadata"].update(name=name, namespace=ns)
            return 201 if method == "POST" else 200, obj
        return ans


@pytest.fixture
def kube():
    fake = FakeKube()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlparse(self.path)
            m = PATH_RE.match(url.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if not m:
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
    fake.api = client.CustomObjectsApi(client.ApiClient(config))
    yield fake
    server.shutdown()
    server.server_close()


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
    "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
    "metadata": {"name": "darts-example-n4fpnxlm", "labels": {"katib.kubeflow.org/experiment": "darts-example"}},
    "status": {"conditions": [
        {"type": "Created", "status": "True", "reason": "TrialCreated", "message": "Trial is created"},
        {"type": "Running", "status": "False", "reason": "TrialRunning", "message": "Trial is running"},
        {"type": "Failed", "status": "True", "reason": "TrialFailed. Job reason: BackoffLimitExceeded",
         "message": "Trial has failed. Job message: Job has reached the specified backoff limit"},
    ]},
}


def test_failed_experiment_raises_with_its_conditions_and_failed_trials(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", "failed")
    kube.on("GET", "trials", False, (200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList",
                                          "metadata": {}, "items": [FAILED_TRIAL]}))
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
    kube.on("POST", "experiments", False, status(
        403, "Forbidden", 'experiments.kubeflow.org is forbidden: User "system:serviceaccount:ns:default" '
        'cannot create resource "experiments" in API group "kubeflow.org"'))
    with pytest.raises(kb.KatibApiError) as err:
        run(kube)
    assert err.value.status == 403
    assert len(kube.requests) == 1
    assert "RBAC verb 'create' on experiments.kubeflow.org" in str(err.value)
    assert "deploy/rbac.yaml" in str(err.value)


def test_404_on_create_says_katib_is_missing(kube):
    kube.on("POST", "experiments", False, status(404, "NotFound", "the server could not find the requested resource"))
    with pytest.raises(kb.KatibApiError, match=r"is Katib installed \(CRD experiments.kubeflow.org\)"):
        run(kube)
    assert len(kube.requests) == 1


def test_webhook_rejection_is_reported_verbatim(kube):
    msg = ('admission webhook "validator.experiment.katib.kubeflow.org" denied the request: '
           "spec.maxTrialCount: Invalid value: 0: must be greater than 0")
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
    sleeps = []
    kube.on("POST", "experiments", False, status(500, "InternalError", "webhook timeout"), "created")
    kube.on("GET", "experiments", True, status(503, "ServiceUnavailable", "x"),
            status(503, "ServiceUnavailable", "x"), "succeeded")
    run(kube, sleep=sleeps.append, retry=kb.RetryPolicy(attempts=3, backoff_s=0.5))
    assert len(sent(kube, "POST")) == 2 and len(sent(kube, "GET")) == 3
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
    sleeps = []
    with pytest.raises(kb.KatibApiError, match="cannot reach the Kubernetes API to create experiments"):
        kb.run_on_katib(experiment(), NS, api=api, retry=FAST, sleep=sleeps.append)
    assert len(sleeps) == FAST.attempts - 1


def test_no_credentials_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kb.KatibApiError, match="no Kubernetes credentials"):
        kb.run_on_katib(experiment(), NS, retry=FAST)


# --- the RBAC the backend needs is derived from the code ------------------------------------

GROUP_OF = {"experiments": "kubeflow.org", "trials": "kubeflow.org", "pods": ""}
HTTP_VERB = {("POST", False): "create", ("GET", True): "get", ("GET", False): "list", ("DELETE", True): "delete"}


def test_every_request_sent_is_covered_by_required_rbac(kube):
    # One run that takes every path: look for this run's Experiment, 409 -> get -> create, poll while a
    # trial runs (its trials and pods), fail, list trials, delete.
    kube.on("POST", "experiments", False, status(409, "AlreadyExists", "taken"), "created")
    kube.on("GET", "experiments", True, (200, fixture("created")), "running", "failed")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("DELETE", "experiments", True, (200, {"kind": "Status", "status": "Success"}))
    with pytest.raises(kb.KatibExperimentFailed):
        run(kube, delete_after=True, run_id="run-1")
    used = {(GROUP_OF[r["plural"]], r["plural"], HTTP_VERB[(r["method"], r["name"] is not None)])
            for r in kube.requests}
    declared = {(group, plural, verb) for (group, plural), verbs in kb.required_rbac().items() for verb in verbs}
    assert used == declared


def test_only_the_api_calls_table_names_client_methods():
    # Any CustomObjectsApi method named elsewhere in the module would bypass
    # API_CALLS (and so the RBAC check).
    source = Path(kb.__file__).read_text()
    named = set(re.findall(r"\b\w+_namespaced_(?:custom_object|pod)\w*\b", source))
    assert named == {c.method for c in kb.API_CALLS.values()}
    for method in named:
        assert source.count(method) == [c.method for c in kb.API_CALLS.values()].count(method), method
        assert hasattr(client.CustomObjectsApi if "custom_object" in method else client.CoreV1Api, method)


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

RUNNING_TRIAL = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
                 "metadata": {"name": "darts-example-n4fpnxlm", "namespace": NS,
                              "labels": {"katib.kubeflow.org/experiment": "darts-example"}},
                 "status": {"conditions": [{"type": "Created", "status": "True", "reason": "TrialCreated"},
                                           {"type": "Running", "status": "True", "reason": "TrialRunning"}]}}


def pod(waiting=None, scheduled=None, collector=True, name="darts-example-n4fpnxlm-x7k2p"):
    labels = {"job-name": "darts-example-n4fpnxlm"}
    containers = [{"name": "training-container", "image": "katib-digits:0.1.0"}]
    if collector:
        labels["katib.kubeflow.org/trial"] = "darts-example-n4fpnxlm"
        containers.append({"name": "metrics-logger-and-collector", "image": "katib-file-metrics-collector"})
    status = {"phase": "Pending" if waiting or scheduled else "Running", "conditions": []}
    if waiting:
        status["containerStatuses"] = [{"name": "training-container", "image": "katib-digits:0.1.0", "imageID": "",
                                        "ready": False, "restartCount": 0,
                                        "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}}}]
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": scheduled[0], "lastTransitionTime": scheduled[1]})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": containers}, "status": status}


def pods(*items):
    return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(items)}


def test_every_poll_says_how_the_trials_stand(kube):
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, "running", "running", "succeeded")
    said = []
    run(kube, log=said.append)
    assert said == [f"tune: {NS}/{said[0].split('/')[1].split(':')[0]}: Running, 1 trials: 1 Running",
                    f"tune: {NS}/{said[0].split('/')[1].split(':')[0]}: Succeeded, 1 trials: 1 Succeeded"]


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_an_image_that_cannot_be_pulled_fails_at_once_with_the_pods_reason(kube, reason):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("GET", "pods", False, pods(pod(waiting=(reason, 'Back-off pulling image "katib-digits:0.1.0"'))))
    with pytest.raises(kb.KatibExperimentFailed, match=rf"cannot pull image 'katib-digits:0.1.0' \({reason}"):
        run(kube, timeout_s=30)
    polls = [r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]
    assert len(polls) == 1  # the first poll, not the 30 s timeout
    (pod_query,) = [r["query"] for r in sent(kube, "GET") if r["plural"] == "pods"]
    assert pod_query["labelSelector"] == ["job-name in (darts-example-n4fpnxlm)"]


def test_unschedulable_fails_after_the_grace_period_only():
    now = 1_800_000_000.0
    from datetime import datetime, timezone

    def at(seconds_ago):
        return datetime.fromtimestamp(now - seconds_ago, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    message = "0/1 nodes are available: 1 Insufficient cpu."
    assert kb.pod_problem(pod(scheduled=(message, at(10))), "StdOut", now) is None
    problem = kb.pod_problem(pod(scheduled=(message, at(400))), "StdOut", now)
    assert "cannot be scheduled (0/1 nodes are available: 1 Insufficient cpu.) for 400s" in problem


def test_a_namespace_without_the_injection_label_fails_with_the_fix(kube):
    kube.on("POST", "experiments", False, "created").on("GET", "experiments", True, "running")
    kube.on("GET", "trials", False, (200, {"items": [RUNNING_TRIAL]}))
    kube.on("GET", "pods", False, pods(pod(collector=False)))
    with pytest.raises(kb.KatibExperimentFailed, match=r"lacks the label katib.kubeflow.org/metrics-collector-"
                                                       r"injection=enabled.*kubectl label namespace"):
        run(kube)
    assert kb.pod_problem(pod(collector=False), "Push", 0) is None  # Push trials get no sidecar by design


def test_a_healthy_pod_is_no_problem():
    assert kb.pod_problem(pod(), "StdOut", 0) is None


def test_succeeded_with_trials_still_running_waits_for_them(kube):
    """Katib keeps running trials after the end condition and may still change currentOptimalTrial."""
    ended_busy = fixture("succeeded")
    ended_busy["status"]["trialsRunning"] = 1
    ended_busy["status"]["currentOptimalTrial"]["bestTrialName"] = "an-earlier-best"
    kube.on("POST", "experiments", False, "created")
    kube.on("GET", "experiments", True, (200, ended_busy), (200, ended_busy), "succeeded")
    result = run(kube)
    assert result["status"]["currentOptimalTrial"]["bestTrialName"] == "darts-example-n4fpnxlm"
    assert len([r for r in sent(kube, "GET") if r["plural"] == "experiments" and r["name"]]) == 3


def test_a_retried_step_waits_for_the_experiment_its_run_made(kube):
    mine = fixture("running")
    mine["metadata"].update(name="darts-example-ab12c", labels={kb.RUN_ID_LABEL: "run-1"})
    kube.on("GET", "experiments", False, (200, {"kind": "List", "apiVersion": "v1", "items": [mine]}))
    kube.on("GET", "experiments", True, "succeeded")
    said = []
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
