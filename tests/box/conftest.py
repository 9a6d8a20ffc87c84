"""The cluster tier (make test-cluster): the box must be up; the namespace, RBAC and data claim are set up as
docs/cluster.md tells a user to, once per session."""

from __future__ import annotations

import subprocess

import pytest

from tests.box.box import KUBECTL, NAMESPACE, REPO, condition, get, kubectl


@pytest.fixture(scope="session")
def box() -> None:
    done = subprocess.run([str(KUBECTL), "get", "--raw", "/readyz"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"the Katib box is not up (make cluster-up): {done.stderr.strip()}", pytrace=False)


@pytest.fixture(scope="session")
def namespace(box) -> str:
    deploy = REPO / "deploy"
    kubectl("apply", "-f", str(deploy / "namespace.yaml"))
    for manifest in ("rbac.yaml", "data-pvc.yaml", "asha-checkpoints-pvc.yaml"):
        kubectl("-n", NAMESPACE, "apply", "-f", str(deploy / manifest))
    job = "digit-recognizer-data-sample"
    if kubectl("-n", NAMESPACE, "get", "job", job, "--ignore-not-found", "-o", "name").strip() == "":
        kubectl("-n", NAMESPACE, "apply", "-f", str(deploy / "data-sample-job.yaml"))
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Complete", f"job/{job}", "--timeout=300s", timeout=320)
    assert (condition(get("-n", NAMESPACE, "job", job), "Complete") or {}).get("status") == "True"
    return NAMESPACE
