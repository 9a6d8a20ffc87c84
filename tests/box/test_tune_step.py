"""The pipeline's tune step on Katib (the box), with the rights deploy/rbac.yaml gives KFP's runner account and
that account's own token, as KFP's runner would run it: it creates the Experiment, waits, returns Katib's
currentOptimalTrial in the shape the retrain reads; retrain and predict make a submission from it. And its
failures: a wrong trial image, a namespace without Katib's injection label, a suggestion image that is missing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from pipeline import lint
from pipeline.cluster.katib_api import KatibApiError, KatibExperimentFailed, run_on_katib
from pipeline.image import IMAGE
from pipeline.katib.result import parse_result
from pipeline.workflow import steps
from tests.box.box import NAMESPACE, REPO, get, kubectl
from tests.box.differential import experiment, katib_trials
from tests.conftest import katib_digits

pytestmark = pytest.mark.cluster

RUNNER = ("kubeflow", "pipeline-runner")  # the account deploy/rbac.yaml binds: KFP's runner
API = "https://127.0.0.1:16443"
CA = "/var/lib/katib-box/pki/ca.crt"
SAMPLE_IN_IMAGE = "/app/data/sample/train.csv.gz"  # deploy/data-sample-job.yaml copies it from there


@pytest.fixture(scope="module")
def runner_kubeconfig(namespace, tmp_path_factory) -> Path:
    ns, account = RUNNER
    kubectl("create", "namespace", ns, check=False)
    kubectl("-n", ns, "create", "serviceaccount", account, check=False)
    kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
    token = kubectl("-n", ns, "create", "token", account, "--duration=2h").strip()
    path = tmp_path_factory.mktemp("runner") / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "runner",
                "clusters": [{"name": "box", "cluster": {"server": API, "certificate-authority": CA}}],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": "runner", "context": {"cluster": "box", "user": account, "namespace": NAMESPACE}}
                ],
            }
        )
    )
    return path


@pytest.fixture
def as_runner(runner_kubeconfig, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(runner_kubeconfig))
    # the account may not create Experiments anywhere else: the rights are deploy/rbac.yaml's, not the admin's
    denied = kubectl(
        "--kubeconfig",
        str(runner_kubeconfig),
        "auth",
        "can-i",
        "create",
        "experiments.kubeflow.org",
        "-n",
        "default",
        check=False,
    ).strip()
    assert denied == "no", denied


def small(name: str, max_trials: int = 2):
    return steps.smoke_copy(
        lint.load(REPO / "experiments" / f"{name}.yaml"),
        NAMESPACE,
        max_trials,
        300,
        1,
        requests={"cpu": "100m", "memory": "512Mi"},
    )


def tune(exp, tmp_path: Path, timeout_s: int = 900, **cluster):
    return steps.tune(
        exp,
        "katib",
        tmp_path,
        namespace=NAMESPACE,
        timeout_s=timeout_s,
        delete_after=True,
        cluster={"data_namespace": NAMESPACE, "run_id": f"box-{int(time.time())}", **cluster},
    )


def test_tune_step_returns_katibs_optimal_trial_and_a_submission_follows(as_runner, tmp_path):
    final = tune(small("tpe"), tmp_path, trial_image=IMAGE, data_pvc="digit-recognizer-data")
    name = final["metadata"]["name"]
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in final["status"]["conditions"])
    tuned = parse_result(final, name)
    assert tuned.optimal.to_katib()["bestTrialName"] == final["status"]["currentOptimalTrial"]["bestTrialName"]
    assert kubectl("-n", NAMESPACE, "get", "experiment", name, "--ignore-not-found", "-o", "name").strip() == ""

    (tmp_path / "experiment.json").write_text(json.dumps(final))
    trained = katib_digits(
        "train",
        "--params",
        str(tmp_path / "experiment.json"),
        "--experiment",
        str(REPO / "experiments" / "tpe.yaml"),
        "--data",
        str(REPO / "data" / "sample"),
        "--out",
        str(tmp_path / "model"),
        "--epochs",
        "1",
        "--ensemble",
        "1",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    predicted = katib_digits(
        "predict",
        "--model",
        str(tmp_path / "model"),
        "--data",
        str(REPO / "data" / "sample"),
        "--out",
        str(tmp_path / "submission.csv"),
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = (tmp_path / "submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,Label" and len(rows) == 501


def test_a_wrong_trial_image_fails_within_a_poll_naming_errimagepull(as_runner, tmp_path):
    started = time.monotonic()
    with pytest.raises(KatibExperimentFailed, match="ErrImagePull|ImagePullBackOff") as failed:
        tune(small("random"), tmp_path, trial_image=f"{IMAGE}-no-such-tag", data_pvc="digit-recognizer-data")
    assert "trial_image" in str(failed.value)
    assert time.monotonic() - started < 180, "not within a poll or two of the pull failing"


def test_a_namespace_without_katibs_injection_label_fails_with_the_fix(runner_kubeconfig, tmp_path, monkeypatch):
    ns = "katib-digits-unlabelled"
    kubectl("create", "namespace", ns, check=False)
    kubectl("-n", ns, "apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
    monkeypatch.setenv("KUBECONFIG", str(runner_kubeconfig))
    exp = small("random")
    exp.raw["metadata"]["namespace"] = ns
    pod = exp.trial_spec["spec"]["template"]["spec"]  # the image's own sample: no claim in that namespace
    pod.pop("volumes", None)
    container = exp.primary_container()
    container.pop("volumeMounts", None)
    container["command"] = [f"--data={SAMPLE_IN_IMAGE}" if w.startswith("--data=") else w for w in container["command"]]
    try:
        # Katib's validating webhook refuses it at creation; the step says so in one line, with Katib's words
        with pytest.raises(KatibApiError, match="katib.kubeflow.org/metrics-collector-injection: enabled") as failed:
            steps.tune(exp, "katib", tmp_path, namespace=ns, timeout_s=600, delete_after=True)
        assert ns in str(failed.value)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


def test_a_missing_suggestion_image_fails_with_katibs_reason(as_runner, tmp_path):
    config_yaml = get("-n", "kubeflow", "configmap", "katib-config")["data"]["katib-config.yaml"]
    config = yaml.safe_load(config_yaml)
    entry = next(s for s in config["runtime"]["suggestions"] if s["algorithmName"] == "tpe")
    entry["image"] = "ghcr.io/kubeflow/katib/suggestion-hyperopt:no-such-tag"

    def put(text: str) -> None:
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "katib-config", "namespace": "kubeflow"},
            "data": {"katib-config.yaml": text},
        }
        kubectl("apply", "-f", "-", stdin=json.dumps(cm))

    put(yaml.safe_dump(config, sort_keys=False))
    try:
        started = time.monotonic()
        with pytest.raises(KatibExperimentFailed, match="DeploymentNotReady") as failed:
            tune(small("tpe"), tmp_path, trial_image=IMAGE, data_pvc="digit-recognizer-data")
        assert "no-such-tag" in str(failed.value) and "runtime.suggestions" in str(failed.value)
        assert time.monotonic() - started < 240
    finally:
        put(config_yaml)


def test_the_step_ends_on_katibs_condition_and_each_trials_own_not_on_counts(as_runner):
    """A Succeeded Experiment with a trial still to run (tests/box/test_differential.py, extra-trial): the step
    waits for that trial by its own conditions, and returns Katib's final object, the late trial in it."""
    raw = experiment("tune-extra-trial", mode="mixed", epochs=5, parallel=2, max_trials=2, max_failed=2, random_state=3)
    said: list[str] = []
    final = run_on_katib(raw, NAMESPACE, timeout_s=600, poll_s=3, log=said.append)
    name = final["metadata"]["name"]
    ends = sorted(t["end"][0] for t in katib_trials(name))
    assert ends == ["MetricsUnavailable", "Succeeded", "Succeeded"], (ends, said)
    status = final["status"]
    assert status["trials"] == 3 and not status.get("runningTrialList") and not status.get("pendingTrialList"), status
    best = {a["name"]: a["value"] for a in status["currentOptimalTrial"]["parameterAssignments"]}
    assert (float(best["x"]), int(best["y"])) == (0.5, 3), best  # the third trial, which ended after Succeeded
    assert any("Succeeded" in line for line in said), said
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--wait=false")
