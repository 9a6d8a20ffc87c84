"""deploy/kserve/*.yaml, checked statically (no KServe and no cluster here): KServe InferenceServices in
the project's namespace, without Istio sidecars; the TensorFlow runtime reads the folder the pipeline's
export step writes on the data claim; the custom predictor runs a `katib-digits serve` command our CLI
accepts, on the port and route its probe checks. Their pod parts (containers, volumes, resources) go
through the Kubernetes client's own models with nothing lost on the way back, as deploy/*.yaml do."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
import yaml
from kubernetes import client

from pipeline.cli.serve import serve_command
from pipeline.workflow.steps import DATA_MOUNT, EXPORT_DIR
from tests.conftest import REPO

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
    version = tuple(int(v) for v in DOCS["inferenceservice.yaml"]["spec"]["predictor"]["model"]["runtimeVersion"].split("."))
    assert version > (2, 6, 2)  # KServe's ClusterServingRuntime default predates our TensorFlow


def custom():
    predictor = DOCS["custom-predictor.yaml"]["spec"]["predictor"]
    (container,) = predictor["containers"]
    return predictor, container


def test_the_custom_predictors_pod_parts_are_valid_kubernetes_objects():
    predictor, container = custom()
    assert set(predictor) == {"securityContext", "containers", "volumes"}
    round_trip(container, "V1Container")
    for volume in predictor["volumes"]:
        round_trip(volume, "V1Volume")
    assert round_trip(predictor["securityContext"], "V1PodSecurityContext").run_as_non_root is True


def test_the_custom_predictor_runs_a_serve_command_our_cli_accepts():
    _, container = custom()
    scripts = re.search(r"^\[project\.scripts\]\n((?:.+\n)+)", (REPO / "pyproject.toml").read_text(), re.M)[1]
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


def test_the_custom_predictor_serves_the_exported_model_from_the_data_claim_read_only():
    predictor, container = custom()
    params = serve_command.make_context("serve", list(container["args"])).params
    assert str(params["model"]) == EXPORT_DIR
    (mount,) = [m for m in container["volumeMounts"] if str(params["model"]).startswith(m["mountPath"] + "/")]
    assert mount["mountPath"] == DATA_MOUNT and mount["readOnly"] is True
    (volume,) = [v for v in predictor["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"] == {"claimName": CLAIM, "readOnly": True}


def test_the_custom_predictor_runs_the_image_the_experiments_run():
    _, container = custom()
    images = set()
    for path in (REPO / "experiments").glob("*.yaml"):
        pod = yaml.safe_load(path.read_text())["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        images.update(c["image"] for c in pod["containers"])
    assert container["image"] in images and not container["image"].endswith(":latest")
