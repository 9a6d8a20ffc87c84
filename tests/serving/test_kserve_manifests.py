"""deploy/kserve/*.yaml, checked statically (no KServe and no cluster here): KServe InferenceServices in
the project's namespace, without Istio sidecars; the TensorFlow runtime reads the folder the pipeline's
export step writes on the data claim; the custom predictor runs a `katib-digits serve` command our CLI
accepts, on the port and route its probe checks, on the same folder KServe mounts for it, in a pod spec
Knative's webhook admits with its default features (Serverless, Kubeflow 1.11's default). Their pod parts
(containers, resources) go through the Kubernetes client's own models with nothing lost on the way back,
as deploy/*.yaml do."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
import yaml
from kubernetes import client

from pipeline.cli.serve import serve_command
from pipeline.workflow.steps import DATA_MOUNT, EXPORT_DIR
from tests.conftest import REPO, must_search

KSERVE = REPO / "deploy" / "kserve"
CLAIM = yaml.safe_load((REPO / "deploy" / "data-pvc.yaml").read_text())["metadata"]["name"]
NAMESPACE = yaml.safe_load((REPO / "deploy" / "namespace.yaml").read_text())["metadata"]["name"]
DOCS = {path.name: yaml.safe_load(path.read_text()) for path in sorted(KSERVE.glob("*.yaml"))}
SERVE_DEFAULTS = {p.name: p.default for p in serve_command.params}


def round_trip(obj, model: str):
    """The object as the kubernetes client's model, which must give back exactly what was written."""
    api = client.ApiClient()
    parsed = api._ApiClient__deserialize(obj, model)
    assert api.sanitize_for_serialization(parsed) == obj, model
    return parsed


def test_both_variants_are_shipped():
    assert set(DOCS) == {"inferenceservice.yaml", "custom-predictor.yaml"}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_an_inference_service_in_our_namespace_without_istio_sidecars(name):
    doc = DOCS[name]
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert doc["metadata"]["namespace"] == NAMESPACE
    assert doc["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert set(doc["spec"]) == {"predictor"}


def test_the_tensorflow_runtime_reads_what_the_export_step_writes():
    doc = DOCS["inferenceservice.yaml"]
    model = doc["spec"]["predictor"]["model"]
    assert set(model) == {"modelFormat", "runtimeVersion", "storageUri", "resources"}
    assert model["modelFormat"] == {"name": "tensorflow"}
    # pvc://CLAIM/PATH: PATH on the claim is what the pipeline's steps see under the mount
    assert model["storageUri"] == f"pvc://{CLAIM}/{PurePosixPath(EXPORT_DIR).relative_to(DATA_MOUNT)}"
    resources = round_trip(model["resources"], "V1ResourceRequirements")
    assert resources.requests and resources.limits
    # TF Serving names the model after the InferenceService: the routes our server answers too
    assert doc["metadata"]["name"] == SERVE_DEFAULTS["name"]


def test_tf_serving_is_pinned_to_a_version_newer_than_kserves_default():
    version = tuple(
        int(v) for v in DOCS["inferenceservice.yaml"]["spec"]["predictor"]["model"]["runtimeVersion"].split(".")
    )
    assert version > (2, 6, 2)  # KServe's ClusterServingRuntime default predates our TensorFlow


def custom():
    predictor = DOCS["custom-predictor.yaml"]["spec"]["predictor"]
    (container,) = predictor["containers"]
    return predictor, container


def test_the_custom_predictors_pod_parts_are_valid_kubernetes_objects():
    predictor, container = custom()
    assert set(predictor) == {"containers"}
    round_trip(container, "V1Container")


# Knative Serving 1.16.2 (what Kubeflow 1.11 installs for KServe's default Serverless mode), with its default
# features (pkg/apis/config/features.go: PodSpecSecurityContext, PodSpecPersistentVolumeClaim, SecurePodDefaults
# all Disabled). Its webhook refuses a field its masks leave out (pkg/apis/serving/fieldmask.go,
# k8s_validation.go); the lines are quoted in docs/serving.md.
KNATIVE_POD_SECURITY_FIELDS: set[str] = set()  # PodSecurityContextMask returns an empty one when the flag is off
KNATIVE_CONTAINER_SECURITY_FIELDS = {
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "seccompProfile",
}


def knative_refusals(predictor: dict) -> list[str]:
    """What Knative 1.16.2's webhook, with its default features, refuses in the pod part of a predictor."""
    refused = [
        f"securityContext.{field}"
        for field in (predictor.get("securityContext") or {})
        if field not in KNATIVE_POD_SECURITY_FIELDS
    ]
    refused += [
        f"volumes: persistent volume claim {v['persistentVolumeClaim']['claimName']}"
        for v in predictor.get("volumes") or []
        if "persistentVolumeClaim" in v
    ]
    for container in predictor["containers"]:
        context = container.get("securityContext") or {}
        refused += [
            f"{container['name']}.securityContext.{field}"
            for field in context
            if field not in KNATIVE_CONTAINER_SECURITY_FIELDS
        ]
        if (context.get("capabilities") or {}).get("add"):  # kubernetes.containerspec-addcapabilities: off
            refused.append(f"{container['name']}.securityContext.capabilities.add")
    return refused


def test_knatives_default_features_admit_the_custom_predictor():
    predictor, _ = custom()
    assert knative_refusals(predictor) == []
    # The manifest as it was (issue 30, item 7): Knative refused it in Serverless mode, the default.
    before = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "containers": [{"name": "kserve-container", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}}],
    }
    assert knative_refusals(before) == [
        "securityContext.runAsNonRoot",
        "securityContext.runAsUser",
        f"volumes: persistent volume claim {CLAIM}",
    ]


def test_the_custom_predictor_runs_as_the_images_user_and_never_as_root():
    import dockerfile

    _, container = custom()
    (user,) = [c.value[0] for c in dockerfile.parse_file(str(REPO / "Dockerfile")) if c.cmd.upper() == "USER"]
    context = round_trip(container["securityContext"], "V1SecurityContext")
    assert context.run_as_non_root is True and context.allow_privilege_escalation is False
    assert str(context.run_as_user) == user.split(":")[0]


# KServe v0.15.2: a custom container's model location is its STORAGE_URI variable
# (pkg/apis/serving/v1beta1/predictor_custom.go, GetStorageUri); for pvc:// its pod webhook mounts the claim's
# path at /mnt/models (constants.DefaultModelLocalMountPath), read-only unless storage.kserve.io/readonly is
# "false" (pkg/webhook/admission/pod/storage_initializer_injector.go).
KSERVE_MODEL_MOUNT = "/mnt/models"


def test_kserve_mounts_the_exported_model_where_serve_reads_it():
    _, container = custom()
    env = {e["name"]: e["value"] for e in container["env"]}
    tf_runtime = DOCS["inferenceservice.yaml"]["spec"]["predictor"]["model"]["storageUri"]
    assert env["STORAGE_URI"] == tf_runtime == f"pvc://{CLAIM}/{PurePosixPath(EXPORT_DIR).relative_to(DATA_MOUNT)}"
    params = serve_command.make_context("serve", list(container["args"])).params
    assert str(params["model"]) == KSERVE_MODEL_MOUNT
    assert "volumeMounts" not in container  # KServe adds the one mount; one of ours at the same path would clash
    annotations = DOCS["custom-predictor.yaml"]["metadata"]["annotations"]
    assert annotations.get("storage.kserve.io/readonly", "true") != "false"  # the model is only read


def test_the_custom_predictor_runs_a_serve_command_our_cli_accepts():
    _, container = custom()
    scripts = must_search(r"^\[project\.scripts\]\n((?:.+\n)+)", (REPO / "pyproject.toml").read_text(), re.M)[1]
    assert f'\n{container["command"][0]} = "pipeline.cli:main"' in "\n" + scripts  # the console script
    assert container["command"][1:] == ["serve"]
    params = serve_command.make_context("serve", list(container["args"])).params  # click parses them as we do
    (port,) = container["ports"]
    assert port == {"containerPort": params["port"], "protocol": "TCP"} and params["port"] == 8080  # KServe's port
    assert params["host"] == "0.0.0.0"  # reachable from outside the pod
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{params['name']}", "port": params["port"]}
    assert params["name"] == DOCS["inferenceservice.yaml"]["metadata"]["name"]  # one route for both variants
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_custom_predictor_runs_the_image_the_experiments_run():
    _, container = custom()
    images: set[str] = set()
    for path in (REPO / "experiments").glob("*.yaml"):
        pod = yaml.safe_load(path.read_text())["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        images.update(c["image"] for c in pod["containers"])
    assert container["image"] in images and not container["image"].endswith(":latest")
