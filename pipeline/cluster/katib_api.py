"""Run an Experiment on a real Katib through the Kubernetes API.

Create it under a fresh name (or, for a retried step, find the one this run
already made), poll it until it ends or the time is up, saying on every poll
how its trials stand, fail fast with the pod's own reason when trials cannot
start (an image that cannot be pulled, a pod that cannot be scheduled, a
namespace without Katib's metrics-collector label) or when its Suggestion's
service cannot (Katib leaves such a Suggestion at DeploymentReady=False and
never fails it), fail loudly when it fails (the retired v1 katib-launcher
exited 0 on failure), and return the final object exactly as `kubectl get
experiment -o json` shows it, once every trial has ended by its own
conditions: Katib does not stop running trials when an Experiment ends, keeps
updating `currentOptimalTrial` while it lists one as running, and stops
updating the object at all once it lists none (so its pending count may stay
stale: experiment_controller.go, Reconcile).

Why the plain `CustomObjectsApi` and not kubeflow-katib's `KatibClient`: the
SDK's create/get wrap every `ApiException` into a RuntimeError/TimeoutError,
which loses the HTTP status we need to tell 403 from 409 from 5xx; its wait
raises without the Experiment's conditions; and its objects are the SDK's
models, not the JSON a `kubectl get -o json` gives. The custom-objects API
returns that JSON as plain dicts and lets us list, in one table, every call
we make (API_CALLS), from which the RBAC Role in deploy/ is checked.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.status import EXPERIMENT_LABEL, condition_is_true, conditions, describe_conditions

GROUP = "kubeflow.org"
VERSION = "v1beta1"
MAX_NAME_LEN = 40  # Katib's validating webhook rejects longer Experiment names
SUFFIX_LEN = 5  # like the API server's generateName
RUN_ID_LABEL = "katib-digits/run-id"  # the pipeline run (or one CLI call) that made the Experiment
TRIAL_LABEL = "katib.kubeflow.org/trial"  # Katib's pod webhook labels each trial pod it mutates
JOB_NAME_LABEL = "job-name"  # the Job controller's label on a batch/v1 Job's pods (the Job is named as the trial)
COLLECTOR_CONTAINER = "metrics-logger-and-collector"  # the sidecar Katib injects for StdOut and File
INJECTION_LABEL = "katib.kubeflow.org/metrics-collector-injection"
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
CRASH_REASONS = ("CrashLoopBackOff",)
# Katib's suggestion Deployment: named <experiment>-<algorithm>, its pods labelled so (util.SuggestionLabels),
# its early-stopping service in container `early-stopping` (consts.ContainerEarlyStopping).
SUGGESTION_DEPLOYMENT_LABEL = "katib.kubeflow.org/deployment"
EARLY_STOPPING_CONTAINER = "early-stopping"
# experiment_controller.go, ReconcileSuggestions: the Experiment's Failed message when its Suggestion failed.
SUGGESTION_FAILED_MESSAGE = "Suggestion has failed"
# updateTrialsSummary's order of trial conditions (status_util.go); none of them True: Pending.
TRIAL_STATES = ("Killed", "Failed", "Succeeded", "EarlyStopped", "Running", "MetricsUnavailable")
TRIAL_ENDED = frozenset({"Killed", "Failed", "Succeeded", "EarlyStopped", "MetricsUnavailable"})
ENDED_TRIAL_LISTS = (
    "succeededTrialList",
    "failedTrialList",
    "killedTrialList",
    "earlyStoppedTrialList",
    "metricsUnavailableTrialList",
)
UNSCHEDULABLE_GRACE_S = 300  # a cluster autoscaler may still add a node
REQUEST_TIMEOUT_S = 30  # one HTTP request; a hung API server must not hang the step


@dataclass(frozen=True)
class ApiCall:
    method: str  # CustomObjectsApi (group kubeflow.org) or CoreV1Api (group "") method
    verb: str  # Kubernetes RBAC verb it needs
    plural: str  # the resource
    group: str = GROUP


# Every Kubernetes API call this module makes, and the only path to them (see
# _call). deploy/rbac.yaml's Role is tested against required_rbac().
API_CALLS: dict[str, ApiCall] = {
    "create_experiment": ApiCall("create_namespaced_custom_object", "create", "experiments"),
    "get_experiment": ApiCall("get_namespaced_custom_object", "get", "experiments"),
    "list_experiments": ApiCall("list_namespaced_custom_object", "list", "experiments"),
    "delete_experiment": ApiCall("delete_namespaced_custom_object", "delete", "experiments"),
    "list_trials": ApiCall("list_namespaced_custom_object", "list", "trials"),
    "get_suggestion": ApiCall("get_namespaced_custom_object", "get", "suggestions"),
    "list_pods": ApiCall("list_namespaced_pod", "list", "pods", group=""),
}


def required_rbac() -> dict[tuple[str, str], set[str]]:
    """{(API group, resource): RBAC verbs} that run_on_katib and stop_run need in their namespace."""
    needed: dict[tuple[str, str], set[str]] = {}
    for call in API_CALLS.values():
        needed.setdefault((call.group, call.plural), set()).add(call.verb)
    return needed


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for 5xx, 429 and connection errors; never for other 4xx."""

    attempts: int = 5
    backoff_s: float = 1.0  # doubles after each failure
    max_backoff_s: float = 16.0


# --- errors ------------------------------------------------------------------


class KatibError(UserError):
    """Anything that stops a Katib run; the message names the Experiment."""


class KatibApiError(KatibError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class KatibExperimentFailed(KatibError):
    """The Experiment ended Failed (or vanished); carries its last conditions."""

    def __init__(self, message: str, experiment: dict[str, Any] | None):
        super().__init__(message)
        self.experiment = experiment
        self.conditions = conditions(experiment)


class KatibTimeout(KatibError):
    """Still not finished when the time was up; carries its last conditions."""

    def __init__(self, message: str, experiment: dict[str, Any] | None):
        super().__init__(message)
        self.experiment = experiment
        self.conditions = conditions(experiment)


def unique_name(base: str) -> str:
    """`base` plus a random suffix, within Katib's 40-character limit."""
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(SUFFIX_LEN))
    stem = base.lower()[: MAX_NAME_LEN - SUFFIX_LEN - 1].rstrip("-")
    if not stem or not stem[0].isalpha():
        stem = ("x" + stem)[: MAX_NAME_LEN - SUFFIX_LEN - 1].rstrip("-")
    return f"{stem}-{suffix}"


# --- API calls, errors and retries ---------------------------------------------


def _status_message(exc: Exception) -> str:
    # The API server answers errors with a v1 Status whose `message` says why.
    body = getattr(exc, "body", None)
    try:
        return json.loads(body or "").get("message") or str(body)
    except (TypeError, ValueError, AttributeError):
        return (str(body) if body else "") or getattr(exc, "reason", "") or str(exc)


def _retryable(exc: Exception) -> bool:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, ApiException):
        return exc.status == 429 or (exc.status or 0) >= 500
    return isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError))


def _call(api: Any, op: str, retry: RetryPolicy, sleep: Callable[[float], None], **kwargs: Any) -> Any:
    """One entry of API_CALLS, retried with backoff on 5xx/429/connection errors. Core calls
    answer as the same JSON (camelCase dicts) the custom-objects calls give."""
    call = API_CALLS[op]
    delay = retry.backoff_s
    for attempt in range(1, retry.attempts + 1):
        try:
            if call.group == GROUP:
                return getattr(api, call.method)(
                    GROUP, VERSION, plural=call.plural, _request_timeout=REQUEST_TIMEOUT_S, **kwargs
                )
            from kubernetes import client

            core = client.CoreV1Api(api.api_client)
            answer = getattr(core, call.method)(_request_timeout=REQUEST_TIMEOUT_S, **kwargs)
            return api.api_client.sanitize_for_serialization(answer)
        except Exception as exc:  # any error: classified right below
            if not _retryable(exc) or attempt == retry.attempts:
                raise
            sleep(delay)
            delay = min(delay * 2, retry.max_backoff_s)
    raise AssertionError("unreachable")


def _api_error(exc: Exception, op: str, namespace: str, name: str | None) -> KatibApiError:
    """A one-line, actionable message for an API failure."""
    from kubernetes.client.exceptions import ApiException

    call = API_CALLS[op]
    resource = f"{call.plural}.{call.group}" if call.group else call.plural
    what = f"{call.verb} {resource}" + (f" {name!r}" if name else "") + f" in namespace {namespace!r}"
    if not isinstance(exc, ApiException):
        return KatibApiError(f"cannot reach the Kubernetes API to {what}: {exc}")
    status, detail = exc.status, _status_message(exc)
    if status in (401, 403):
        hint = (
            f"the service account needs RBAC verb {call.verb!r} on {resource} in {namespace!r}: "
            f"kubectl -n {namespace} apply -f deploy/rbac.yaml grants it to the pipeline's own runner account"
        )
        return KatibApiError(f"forbidden to {what} (HTTP {status}): {detail}; {hint}", status)
    if status == 404 and op == "create_experiment":
        return KatibApiError(
            f"cannot {what} (HTTP 404): {detail}; is Katib installed (CRD experiments.{GROUP}) "
            f"and does namespace {namespace!r} exist?",
            status,
        )
    if status in (400, 422) and op == "create_experiment":
        return KatibApiError(f"Katib rejected the Experiment {name!r} (HTTP {status}): {detail}", status)
    return KatibApiError(f"failed to {what} (HTTP {status}): {detail}", status)


def default_api() -> Any:
    """CustomObjectsApi from the pod's service account, else the user's kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            # $KUBECONFIG as it is now: the client reads it once, at import, for its default
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (config.ConfigException, OSError) as exc:
            raise KatibApiError(
                f"no Kubernetes credentials: not running in a pod and no usable kubeconfig "
                f"($KUBECONFIG or ~/.kube/config): {exc}"
            ) from None
    return client.CustomObjectsApi()


# --- the run -------------------------------------------------------------------


def _prepare(
    experiment: dict[str, Any], namespace: str, name: str, run_id: str, owner: dict[str, str] | None = None
) -> dict[str, Any]:
    body = copy.deepcopy(experiment)
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    for server_owned in ("generateName", "resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(server_owned, None)
    meta["name"] = name
    meta["namespace"] = namespace
    meta.setdefault("labels", {})[RUN_ID_LABEL] = run_id
    if owner:
        # The garbage collector deletes the Experiment (and Katib's trials with it) when its owner goes.
        meta["ownerReferences"] = [*(meta.get("ownerReferences") or []), dict(owner)]
    return body


def trial_counts(obj: dict[str, Any] | None) -> str:
    """`5 trials: 2 Running, 3 Succeeded`, from an Experiment's status."""
    st = (obj or {}).get("status") or {}
    parts = [
        f"{st[key]} {label}"
        for key, label in (
            ("trialsPending", "Pending"),
            ("trialsRunning", "Running"),
            ("trialsSucceeded", "Succeeded"),
            ("trialsFailed", "Failed"),
            ("trialsKilled", "Killed"),
            ("trialsEarlyStopped", "EarlyStopped"),
            ("trialMetricsUnavailable", "MetricsUnavailable"),
        )
        if st.get(key)
    ]
    return f"{st.get('trials', 0)} trials" + (": " + ", ".join(parts) if parts else "")


def trial_state(trial: dict[str, Any]) -> str:
    """A Trial's state from its own conditions, as Katib's updateTrialsSummary reads them."""
    return next((kind for kind in TRIAL_STATES if condition_is_true(trial, kind)), "Pending")


def _waiting(pod: dict[str, Any]):
    """(container status, its waiting state) for each container that waits with a reason."""
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            yield cs, waiting


def _since(timestamp: Any, now: float) -> float | None:
    """Seconds from an RFC 3339 timestamp to `now`, None when it does not parse."""
    from datetime import datetime

    try:
        return now - datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _unschedulable(pod: dict[str, Any], now: float, grace_s: float) -> tuple[str, float] | None:
    """(the scheduler's message, seconds) once the pod has been Unschedulable for grace_s."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            waited = _since(cond.get("lastTransitionTime"), now)
            waited = grace_s if waited is None else waited
            if waited >= grace_s:
                return cond.get("message", ""), waited
    return None


def pod_problem(
    pod: dict[str, Any],
    collector_kind: str,
    now: float,
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S,
    primary: str | None = None,
) -> str | None:
    """Why a trial pod will never report a metric, from its status (the pod's own reason), or None.
    Kubernetes never fails a Job for these, so without this the step would wait for its timeout.
    `primary`: the trial template's primaryContainerName, the one container trial_image sets."""
    name = (pod.get("metadata") or {}).get("name", "?")
    for cs, waiting in _waiting(pod):
        reason, container, image = waiting["reason"], cs.get("name"), cs.get("image")
        why = f"{reason}: {waiting.get('message', '')}"
        if reason in IMAGE_PULL_REASONS:
            if container == COLLECTOR_CONTAINER:
                return (
                    f"trial pod {name}: Katib's metrics collector (container {container}) cannot pull image "
                    f"{image!r} ({why}); trial_image does not set it: it is katib-config's "
                    f"runtime.metricsCollectors image for kind {collector_kind} (kubectl -n kubeflow get "
                    "configmap katib-config -o yaml)"
                )
            if primary is not None and container != primary:
                return (
                    f"trial pod {name}: container {container} cannot pull image {image!r} ({why}); "
                    f"trial_image sets only the primary container {primary}: fix this container's image "
                    "in the Experiment's trial template"
                )
            return (
                f"trial pod {name} cannot pull image {image!r} ({why}); "
                "pass the image the cluster can pull (trial_image)"
            )
        if reason in CONFIG_REASONS:
            return f"trial pod {name}: {why}"
    unscheduled = _unschedulable(pod, now, unschedulable_grace_s)
    if unscheduled:
        return (
            f"trial pod {name} cannot be scheduled ({unscheduled[0]}) for {unscheduled[1]:.0f}s: "
            "lower the trial's resources or free the cluster; a missing PersistentVolumeClaim "
            "(data_pvc) shows here too"
        )
    labels = (pod.get("metadata") or {}).get("labels") or {}
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if collector_kind in ("StdOut", "File") and TRIAL_LABEL not in labels and COLLECTOR_CONTAINER not in containers:
        return (
            f"trial pod {name} has no Katib metrics collector: the namespace lacks the label "
            f"{INJECTION_LABEL}=enabled, so no trial ever reports a metric (kubectl label namespace "
            f"{(pod.get('metadata') or {}).get('namespace', 'NAMESPACE')} {INJECTION_LABEL}=enabled)"
        )
    return None


def suggestion_deployment(suggestion: dict[str, Any]) -> str:
    """The name of the Deployment Katib runs a Suggestion's service in (GetSuggestionDeploymentName)."""
    spec = suggestion.get("spec") or {}
    return f"{suggestion['metadata']['name']}-{(spec.get('algorithm') or {}).get('algorithmName', '')}"


def _suggestion_image_hint(container: str | None, suggestion: dict[str, Any]) -> str:
    spec = suggestion.get("spec") or {}
    if container == EARLY_STOPPING_CONTAINER:
        name = (spec.get("earlyStopping") or {}).get("algorithmName", "")
        return f"it is katib-config's runtime.earlyStoppings image for {name!r}"
    name = (spec.get("algorithm") or {}).get("algorithmName", "")
    ours = " (this project's service: deploy/katib-config/asha.yaml, docs/asha.md)" if name == "asha" else ""
    return f"it is katib-config's runtime.suggestions image for algorithm {name!r}{ours}"


def suggestion_problem(
    suggestion: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: float,
    unschedulable_grace_s: float = UNSCHEDULABLE_GRACE_S,
) -> str | None:
    """Why the Experiment's Suggestion will never hand out trials, with Katib's own condition and the
    service pod's reason, or None. Katib marks such a Suggestion DeploymentReady=False and nothing
    else (suggestion_controller.go, checkDeploymentReady), so the Experiment would just stay Running."""
    ready = next((c for c in conditions(suggestion) if c.get("type") == "DeploymentReady"), None)
    if suggestion is None or ready is None or ready.get("status") != "False":
        return None
    said = (
        f"its Suggestion is DeploymentReady=False ({ready.get('reason', '')}: {ready.get('message', '')}): "
        "Katib never fails it"
    )
    ns = suggestion["metadata"].get("namespace", "NAMESPACE")
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        for cs, waiting in _waiting(pod):
            reason, container = waiting["reason"], cs.get("name")
            why = f"{reason}: {waiting.get('message', '')}"
            if reason in IMAGE_PULL_REASONS:
                return (
                    f"{said}; suggestion pod {name} container {container} cannot pull image "
                    f"{cs.get('image')!r} ({why}); {_suggestion_image_hint(container, suggestion)}"
                )
            if reason in CRASH_REASONS:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                exit_ = (
                    (
                        f", last exit code {last.get('exitCode')} ({last.get('reason', '')}"
                        + (f": {last['message'].strip()}" if last.get("message") else "")
                        + ")"
                    )
                    if last
                    else ""
                )
                return (
                    f"{said}; suggestion pod {name} container {container} keeps crashing ({reason}, "
                    f"{cs.get('restartCount', 0)} restarts{exit_}); its log: kubectl -n {ns} logs {name} "
                    f"-c {container} --previous"
                )
            if reason in CONFIG_REASONS:
                return f"{said}; suggestion pod {name} container {container}: {why}"
        unscheduled = _unschedulable(pod, now, unschedulable_grace_s)
        if unscheduled:
            return (
                f"{said}; suggestion pod {name} cannot be scheduled ({unscheduled[0]}) for "
                f"{unscheduled[1]:.0f}s: katib-config's resources for it do not fit the cluster"
            )
    if not pods:
        waited = _since(ready.get("lastTransitionTime"), now)
        if waited is not None and waited >= unschedulable_grace_s:
            return (
                f"{said}; its Deployment {suggestion_deployment(suggestion)} has made no pod in {waited:.0f}s "
                f"(a quota or an admission policy refusing it?): kubectl -n {ns} describe replicaset -l "
                f"{SUGGESTION_DEPLOYMENT_LABEL}={suggestion_deployment(suggestion)}"
            )
    return None


@dataclass
class _Session:
    """One namespace on one API server, with the retry policy applied to each call."""

    api: Any
    namespace: str
    retry: RetryPolicy
    sleep: Callable[[float], None]
    log: Callable[[str], None] = print

    def call(self, op: str, name: str | None = None, **kwargs: Any) -> Any:
        if name is not None:
            kwargs["name"] = name
        return _call(self.api, op, self.retry, self.sleep, namespace=self.namespace, **kwargs)

    def find(self, run_id: str) -> list[dict[str, Any]]:
        """This run's Experiments (a retried step finds the one it made)."""
        try:
            found = self.call("list_experiments", label_selector=f"{RUN_ID_LABEL}={run_id}")
        except Exception as exc:
            raise _api_error(exc, "list_experiments", self.namespace, None) from exc
        return list(found.get("items") or [])

    def create(
        self, experiment: dict[str, Any], run_id: str | None = None, owner: dict[str, str] | None = None
    ) -> dict[str, Any]:
        meta = experiment.get("metadata") or {}
        base = meta.get("name") or meta.get("generateName") or "experiment"
        if run_id:
            mine = [
                e
                for e in self.find(run_id)
                if (e.get("metadata") or {}).get("name", "").startswith(unique_name(base)[: -SUFFIX_LEN - 1])
            ]
            if mine:
                self.log(
                    f"tune: Experiment {self.namespace}/{mine[0]['metadata']['name']} of this run exists "
                    "(the step was retried): waiting for it"
                )
                return mine[0]
        run_id = run_id or uuid.uuid4().hex
        for _ in range(3):  # three random names all taken: something else is wrong
            name = unique_name(base)
            body = _prepare(experiment, self.namespace, name, run_id, owner)
            try:
                return self.call("create_experiment", body=body)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    raise _api_error(exc, "create_experiment", self.namespace, name) from exc
            # 409: a create retried after a lost response may have made it already.
            try:
                existing = self.call("get_experiment", name)
            except Exception as exc:
                raise _api_error(exc, "get_experiment", self.namespace, name) from exc
            if ((existing.get("metadata") or {}).get("labels") or {}).get(RUN_ID_LABEL) == run_id:
                return existing
        raise KatibApiError(
            f"cannot create Experiment from {base!r} in namespace {self.namespace!r}: "
            "the name was taken 3 times (HTTP 409); delete old Experiments or rename it",
            409,
        )

    def trials(self, name: str) -> list[dict[str, Any]]:
        try:
            return list(self.call("list_trials", label_selector=f"{EXPERIMENT_LABEL}={name}").get("items") or [])
        except Exception as exc:
            raise _api_error(exc, "list_trials", self.namespace, None) from exc

    def failed_trials(self, name: str) -> str:
        """Why its trials failed, for the error message; never masks the failure itself."""
        try:
            trials = self.call("list_trials", label_selector=f"{EXPERIMENT_LABEL}={name}").get("items") or []
        except Exception as exc:  # noqa: BLE001
            return f"(trials not readable: {_status_message(exc)})"
        lines = []
        for trial in trials:
            last = (conditions(trial) or [{}])[-1]
            if last.get("type") in ("Failed", "MetricsUnavailable") and last.get("status") == "True":
                lines.append(f"{trial['metadata']['name']}: {last.get('reason', '')}: {last.get('message', '')}")
        return ("failed trials: " + "; ".join(lines)) if lines else ""

    def suggestion(self, name: str) -> dict[str, Any] | None:
        """The Experiment's Suggestion (same name), None before Katib has made it."""
        try:
            return self.call("get_suggestion", name)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise _api_error(exc, "get_suggestion", self.namespace, name) from exc

    def failed_suggestion(self, name: str) -> str:
        """The Suggestion's own Failed condition, for the error message; never masks the failure itself."""
        try:
            suggestion = self.call("get_suggestion", name)
        except Exception as exc:  # noqa: BLE001
            return f"(its Suggestion is not readable: {_status_message(exc)})"
        failed = [c for c in conditions(suggestion) if c.get("type") == "Failed" and c.get("status") == "True"]
        return (
            f"its Suggestion failed ({failed[-1].get('reason', '')}: {failed[-1].get('message', '')})" if failed else ""
        )

    def suggestion_trouble(self, name: str, now: float) -> str | None:
        suggestion = self.suggestion(name)
        if suggestion is None or not any(
            c.get("type") == "DeploymentReady" and c.get("status") == "False" for c in conditions(suggestion)
        ):
            return None  # not made yet, or its service is up: no need to read its pods
        selector = f"{SUGGESTION_DEPLOYMENT_LABEL}={suggestion_deployment(suggestion)}"
        try:
            pods = self.call("list_pods", label_selector=selector).get("items") or []
        except Exception as exc:
            raise _api_error(exc, "list_pods", self.namespace, None) from exc
        return suggestion_problem(suggestion, pods, now)

    def stuck_trial(
        self, trials: list[dict[str, Any]], collector_kind: str, primary: str | None, now: float
    ) -> str | None:
        """The first trial that has not ended whose pod can never report a metric, with the pod's reason."""
        open_ = [t["metadata"]["name"] for t in trials if trial_state(t) not in TRIAL_ENDED]
        if not open_:
            return None
        try:
            pods = self.call("list_pods", label_selector=f"{JOB_NAME_LABEL} in ({','.join(open_)})")
        except Exception as exc:
            raise _api_error(exc, "list_pods", self.namespace, None) from exc
        for pod in pods.get("items") or []:
            problem = pod_problem(pod, collector_kind, now, primary=primary)
            if problem:
                return problem
        return None

    def ended(
        self, last: dict[str, Any], trials: list[dict[str, Any]], collector_kind: str, primary: str | None, now: float
    ) -> bool:
        """True once a Succeeded Experiment's result is final: every trial ended by its own conditions (or
        can never run) and Katib lists none as running (while it does, it still updates the object)."""
        ns, name = self.namespace, last["metadata"]["name"]
        if any(trial_state(t) not in TRIAL_ENDED for t in trials):
            stuck = self.stuck_trial(trials, collector_kind, primary, now)
            if stuck:
                self.log(f"tune: {ns}/{name} ended; not waiting for a trial that can never finish: {stuck}")
            return stuck is not None
        st = last.get("status") or {}
        if st.get("runningTrialList"):
            return False
        counted = {n for key in ENDED_TRIAL_LISTS for n in st.get(key) or []}
        late = sorted(t["metadata"]["name"] for t in trials if t["metadata"]["name"] not in counted)
        if late:
            self.log(
                f"tune: {ns}/{name}: {', '.join(late)} ended after Katib stopped updating the Experiment "
                "(it does once it lists no running trial): not in its currentOptimalTrial"
            )
        return True

    def delete(self, name: str) -> None:
        try:
            self.call("delete_experiment", name)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:  # already gone is what we wanted
                raise _api_error(exc, "delete_experiment", self.namespace, name) from exc

    def wait(
        self,
        created: dict[str, Any],
        deadline: float,
        timeout_s: int,
        poll_s: float,
        clock: Callable[[], float],
        keep_hint: bool,
        wall: Callable[[], float] = time.time,
    ) -> dict[str, Any]:
        name, ns, last = created["metadata"]["name"], self.namespace, created
        spec = created.get("spec") or {}
        kind = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")
        primary = (spec.get("trialTemplate") or {}).get("primaryContainerName")
        said = None
        while True:
            try:
                last = self.call("get_experiment", name)
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    raise KatibExperimentFailed(
                        f"Experiment {ns}/{name} was deleted while we waited for it; "
                        f"last conditions: {describe_conditions(last)}",
                        last,
                    ) from None
                raise _api_error(exc, "get_experiment", ns, name) from exc
            state = (conditions(last) or [{}])[-1].get("type", "Created")
            line = f"tune: {ns}/{name}: {state}, {trial_counts(last)}"
            if line != said:
                self.log(line)
                said = line
            if condition_is_true(last, "Failed"):
                failed = next(c for c in reversed(conditions(last)) if c.get("type") == "Failed")
                why = [
                    self.failed_suggestion(name) if failed.get("message") == SUGGESTION_FAILED_MESSAGE else "",
                    self.failed_trials(name),
                ]
                raise KatibExperimentFailed(
                    f"Experiment {ns}/{name} failed: {describe_conditions(last)}" + "".join(f"; {w}" for w in why if w),
                    last,
                )
            trials = self.trials(name)
            if condition_is_true(last, "Succeeded"):
                if self.ended(last, trials, kind, primary, wall()):
                    return last
            else:
                problem = self.suggestion_trouble(name, wall()) or self.stuck_trial(trials, kind, primary, wall())
                if problem:
                    raise KatibExperimentFailed(f"Experiment {ns}/{name} cannot make progress: {problem}", last)
            remaining = deadline - clock()
            if remaining <= 0:
                hint = f"; it is still there: kubectl delete experiment {name} -n {ns}" if keep_hint else ""
                busy = [t["metadata"]["name"] for t in trials if trial_state(t) not in TRIAL_ENDED]
                waiting = (
                    f" ({len(busy)} trial(s) still running after it ended: {', '.join(busy)})"
                    if busy and condition_is_true(last, "Succeeded")
                    else ""
                )
                raise KatibTimeout(
                    f"Experiment {ns}/{name} did not finish within {timeout_s}s{waiting}; "
                    f"last conditions: {describe_conditions(last)}{hint}",
                    last,
                )
            self.sleep(min(poll_s, remaining))


def run_on_katib(
    experiment: dict[str, Any],
    namespace: str,
    timeout_s: int = 3600,
    delete_after: bool = False,
    poll_s: float = 15,
    api: Any = None,
    *,
    run_id: str | None = None,
    owner: dict[str, str] | None = None,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, Any]:
    """Create `experiment` in `namespace` under a fresh name (labelled with `run_id`; a second call
    with the same run_id waits for the Experiment the first made), wait until it ends and every trial
    has ended, return the final Experiment object (`kubectl get experiment -o json`). `owner`: an
    ownerReference (same namespace) the Experiment is deleted with, e.g. the tune step's pod.

    Raises KatibExperimentFailed (Failed condition, deleted meanwhile, a trial pod that can never
    run: image pull errors, unschedulable, no metrics collector; or a Suggestion whose service pod
    cannot pull its image, crash-loops or cannot be scheduled), KatibTimeout (not finished within
    timeout_s; left running unless delete_after) and KatibApiError (403/404/409/4xx at once, 5xx
    and connection errors after retries). All are UserError: one line in the CLI.
    """
    session = _Session(api if api is not None else default_api(), namespace, retry or RetryPolicy(), sleep, log)
    deadline = clock() + timeout_s
    created = session.create(experiment, run_id, owner)
    name = created["metadata"]["name"]
    try:
        result = session.wait(created, deadline, timeout_s, poll_s, clock, keep_hint=not delete_after)
    except KatibError as exc:
        if delete_after:
            try:
                session.delete(name)
            except KatibError as delete_exc:  # keep the first error; say both
                exc.args = (f"{exc}; deleting it failed too: {delete_exc}",)
        raise
    if delete_after:
        session.delete(name)
    return result


def stop_run(
    namespace: str,
    run_id: str,
    api: Any = None,
    *,
    retry: RetryPolicy | None = None,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> list[str]:
    """Delete this run's Experiments that have not ended (Katib deletes their trials with them):
    the pipeline's exit handler, so a terminated or failed run leaves nothing running."""
    session = _Session(api if api is not None else default_api(), namespace, retry or RetryPolicy(), time.sleep, log)
    stopped = []
    for exp in session.find(run_id):
        name = exp["metadata"]["name"]
        if condition_is_true(exp, "Succeeded") or condition_is_true(exp, "Failed"):
            continue
        session.delete(name)
        log(f"cleanup: deleted Experiment {namespace}/{name} ({describe_conditions(exp)})")
        stopped.append(name)
    return stopped
