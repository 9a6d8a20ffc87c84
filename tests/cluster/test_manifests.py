"""deploy/*.yaml are valid Kubernetes objects (the kubernetes client's own models
deserialize them, with no field lost on the way back), and the Role grants
exactly what pipeline/katib_backend.py calls (derived from its API_CALLS)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from pipeline.cluster.katib_api import GROUP, required_rbac
from tests.conftest import REPO, SAMPLE

DEPLOY = REPO / "deploy"
NAMESPACE = "katib-digits"
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "Pod"): "V1Pod",
    ("batch/v1", "Job"): "V1Job",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((f"{path.name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc))
    return docs


DOCS = documents()


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def test_there_are_manifests():
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {"Namespace", "Role", "RoleBinding", "PersistentVolumeClaim", "Job"} <= kinds


@pytest.mark.parametrize("doc", [d for _, d in DOCS], ids=[i for i, _ in DOCS])
def test_manifest_is_a_valid_kubernetes_object(doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in MODELS, f"unexpected apiVersion/kind {key}"
    api = client.ApiClient()
    # Models check required fields as they are set (client_side_validation).
    model = api._ApiClient__deserialize(doc, MODELS[key])
    assert model.metadata.name
    # The deserializer drops fields it does not know: a round trip that loses
    # nothing means there is no misspelled or misplaced field.
    assert api.sanitize_for_serialization(model) == doc


@pytest.mark.parametrize(
    "doc", [d for _, d in DOCS if d["kind"] != "Namespace"], ids=[i for i, d in DOCS if d["kind"] != "Namespace"]
)
def test_namespaced_objects_go_where_kubectl_n_says(doc):
    """A pod mounts a claim by name in its own namespace: the claims, the jobs that fill them and the Role
    belong where their readers run (katib-digits for kubectl, the run's namespace for the pipeline)."""
    assert "namespace" not in doc["metadata"]


def test_namespace_has_the_label_katib_needs():
    (ns,) = by_kind("Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    assert ns["metadata"]["labels"]["katib.kubeflow.org/metrics-collector-injection"] == "enabled"


def role_verbs() -> dict[tuple[str, str], set[str]]:
    (role,) = by_kind("Role")
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                verbs.setdefault((group, resource), set()).update(rule["verbs"])
    return verbs


def test_role_grants_exactly_the_experiment_verbs_the_backend_uses():
    assert role_verbs()[(GROUP, "experiments")] == required_rbac()[(GROUP, "experiments")]


@pytest.mark.parametrize("resource", sorted(required_rbac()), ids=lambda r: f"{r[1]}.{r[0] or 'core'}")
def test_role_covers_every_call_of_the_backend(resource):
    assert required_rbac()[resource] <= role_verbs().get(resource, set())


@pytest.mark.parametrize(
    "resource", [(GROUP, "trials"), (GROUP, "suggestions"), ("", "pods")], ids=["trials", "suggestions", "pods"]
)
def test_everything_but_experiments_is_read_only(resource):
    assert role_verbs()[resource] == {"get", "list", "watch"}


def test_the_role_is_bound_to_the_account_kfp_runs_steps_as():
    """Not to an account of our own: KFP's driver and launcher run as the same account and need
    KFP's permissions (the kfp-launcher ConfigMap, the artifact Secret, workflowtaskresults)."""
    (role,), (binding,) = by_kind("Role"), by_kind("RoleBinding")
    assert not by_kind("ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]


def pod_specs() -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in by_kind("Job")] + [d["spec"] for d in by_kind("Pod")]


def test_data_volume_is_the_claim_the_experiments_mount_at_data():
    # The data, and the checkpoints experiments/asha.yaml's trials share (deploy/asha-checkpoints-pvc.yaml).
    assert {pvc["metadata"]["name"] for pvc in by_kind("PersistentVolumeClaim")} == {
        "digit-recognizer-data",
        "digits-asha-checkpoints",
    }
    for spec in pod_specs():
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        }
        mounts = {m["name"]: m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        assert claims == {"data": "digit-recognizer-data"} and mounts["data"] == "/data"


def test_experiments_mount_the_data_claim_at_data():
    claims = []
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        exp = yaml.safe_load(path.read_text())
        pod = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        for vol in pod.get("volumes", []):
            if "persistentVolumeClaim" in vol:
                claims.append((path.name, vol["persistentVolumeClaim"]["claimName"]))
                mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] == vol["name"]]
                if vol["persistentVolumeClaim"]["claimName"] == "digit-recognizer-data":
                    assert [m["mountPath"] for m in mounts] == ["/data"], path.name
    if not claims:
        pytest.skip("no Experiment in experiments/ mounts a volume yet")
    # Every Experiment reads the data claim; every claim mounted is one deploy/ creates.
    assert {claim for _, claim in claims} <= {pvc["metadata"]["name"] for pvc in by_kind("PersistentVolumeClaim")}
    assert {name for name, claim in claims if claim == "digit-recognizer-data"} == {name for name, _ in claims}


def test_sample_job_copies_files_the_image_has():
    (job,) = [d for d in by_kind("Job") if d["metadata"]["name"] == "digit-recognizer-data-sample"]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    copied = [Path(word) for word in script.split() if word.startswith("/app/data/sample/")]
    assert {p.name for p in copied} == {"train.csv.gz", "test.csv.gz", "sample_submission.csv"}
    for p in copied:
        assert (SAMPLE / p.name).is_file()


@pytest.mark.parametrize("spec", pod_specs(), ids=lambda s: s["containers"][0]["name"])
def test_pods_run_as_non_root_with_pinned_images(spec):
    assert spec["securityContext"]["runAsNonRoot"] is True
    for container in spec["containers"]:
        image = container["image"]
        assert ":" in image and not image.endswith(":latest"), image


def test_manifests_use_the_image_the_experiments_name():
    images: set[str] = set()
    for path in (REPO / "experiments").glob("*.yaml"):
        pod = yaml.safe_load(path.read_text())["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        images.update(c["image"] for c in pod["containers"])
    if not images:
        pytest.skip("no Experiment in experiments/ yet")
    ours = {c["image"] for spec in pod_specs() for c in spec["containers"] if c["image"].startswith("katib-digits")}
    assert ours and ours <= images, (ours, images)
