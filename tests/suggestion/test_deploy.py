"""deploy/katib-config/asha.yaml: a KatibConfig fragment whose one suggestion entry Katib can
use as it is (a container Kubernetes accepts, our module as command, resources above Katib's
defaults, the image the trials use), for an algorithm Katib does not ship."""

from __future__ import annotations

import yaml
from kubernetes import client

from pipeline.katib import algorithms as rules
from pipeline.katib.experiment import load_experiment
from pipeline.lint.fields import katib_config
from pipeline.suggestion.server import DEFAULT_PORT
from tests.conftest import REPO

FRAGMENT = REPO / "deploy" / "katib-config" / "asha.yaml"
KATIB_ONLY = {
    "algorithmName",
    "serviceAccountName",
    "volumeMountPath",
    "persistentVolumeClaimSpec",
    "persistentVolumeSpec",
    "persistentVolumeLabels",
}  # SuggestionConfig's fields besides the Container


def entry() -> dict:
    doc = yaml.safe_load(FRAGMENT.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("config.kubeflow.org/v1beta1", "KatibConfig")
    assert list(doc) == ["apiVersion", "kind", "runtime"] and list(doc["runtime"]) == ["suggestions"]
    (suggestion,) = doc["runtime"]["suggestions"]
    return suggestion


def test_it_registers_the_extension_katib_lacks():
    assert entry()["algorithmName"] == "asha" and rules.is_extension("asha")
    assert "asha" not in katib_config()["suggestions"]


def test_the_entry_is_a_container_kubernetes_accepts():
    """SuggestionConfig inlines corev1.Container: the rest must survive the client's model unchanged."""
    container = {k: v for k, v in entry().items() if k not in KATIB_ONLY}
    api = client.ApiClient()
    model = api._ApiClient__deserialize({"name": "suggestion", **container}, "V1Container")
    assert api.sanitize_for_serialization(model) == {"name": "suggestion", **container}


def test_it_runs_our_service_on_katibs_port_with_real_resources():
    e = entry()
    assert e["command"] == ["python", "-m", "pipeline.suggestion"]
    assert (REPO / "pipeline" / "suggestion" / "__main__.py").exists()
    assert DEFAULT_PORT == 6789  # Katib's DefaultSuggestionPort: no --port needed
    # Katib's defaults are 500m CPU / 100Mi: ours are set, with more memory than that.
    assert e["resources"]["requests"]["memory"].endswith("Mi") and int(e["resources"]["requests"]["memory"][:-2]) > 100
    assert set(e["resources"]) == {"requests", "limits"}


def test_the_service_image_is_the_trials_image():
    exp = load_experiment(REPO / "experiments" / "asha.yaml")
    (container,) = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    assert entry()["image"] == container["image"]


def test_the_merge_the_comment_describes_gives_a_config_with_one_asha(shared_katib):
    """Katib's standalone katib-config plus our entry: every name once, Katib's entries untouched."""
    config = yaml.safe_load((shared_katib / "katib-config.yaml").read_text())
    before = list(config["runtime"]["suggestions"])
    config["runtime"]["suggestions"].append(entry())
    names = [s["algorithmName"] for s in config["runtime"]["suggestions"]]
    assert len(names) == len(set(names)) and names[-1] == "asha"
    assert config["runtime"]["suggestions"][:-1] == before
