"""The KServe part of scripts/e2e-kind.sh (it cannot run here: no Docker, no cluster, no KServe): it runs
only where KServe's CRD is installed, applies the manifests in deploy/kserve/, puts the model where the
pipeline's export step publishes it, and its request body is one our V1 route (and TF Serving's
signature, [28, 28, 1]) takes. tests/project/test_e2e_script.py runs bash -n and shellcheck on the
whole script and checks every katib-digits flag it passes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from pipeline.serving.server import instances_to_pixels
from pipeline.workflow.steps import EXPORT_DIR
from tests.conftest import REPO, SAMPLE, must_search

TEXT = (REPO / "scripts" / "e2e-kind.sh").read_text()
START = TEXT.index("if kubectl get crd inferenceservices.serving.kserve.io")
PART = TEXT[START : TEXT.index("\nfi\n", START)]


def test_it_runs_only_where_kserve_is_installed():
    commands = [line for line in TEXT[:START].splitlines() if not line.lstrip().startswith("#")]
    assert not any("deploy/kserve" in line or "kubectl apply" in line and "isvc" in line for line in commands)
    assert 'bash -c "$KSERVE_SETUP"' in TEXT[:START] and "KSERVE_SETUP" in TEXT[: TEXT.index("set -euo pipefail")]


def test_it_applies_the_shipped_manifests_and_waits_for_each():
    applied = set(re.findall(r"deploy/kserve/[\w.-]+\.yaml", PART))
    assert applied == {str(p.relative_to(REPO)) for p in (REPO / "deploy" / "kserve").glob("*.yaml")}
    names = {yaml.safe_load((REPO / path).read_text())["metadata"]["name"] for path in applied}
    assert must_search(r"for isvc in ([\w -]+); do", PART)[1].split() == sorted(names)


def test_the_model_goes_where_the_export_step_publishes_it():
    assert f"digit-recognizer-data-shell:{EXPORT_DIR}/1" in PART


def test_our_image_replaces_the_placeholder_in_what_it_applies(tmp_path):
    """The with_image helper's Python, run on both manifests it rewrites."""
    helper = must_search(r"<<'PY'\n(.+?)\nPY\n  \}", PART, re.S)[1]
    for manifest in ("deploy/data-shell-pod.yaml", "deploy/kserve/custom-predictor.yaml"):
        out = subprocess.run(
            [sys.executable, "-c", helper, manifest, "kind.local/katib-digits:e2e"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        doc = yaml.safe_load(out)
        pod = doc["spec"]["predictor"] if doc["kind"] == "InferenceService" else doc["spec"]
        assert [c["image"] for c in pod["containers"]] == ["kind.local/katib-digits:e2e"]
        original = yaml.safe_load((REPO / manifest).read_text())
        assert {**doc, "spec": None} == {**original, "spec": None}


@pytest.mark.process
def test_its_request_body_is_the_first_test_row_as_28x28x1(tmp_path):
    snippet = must_search(r"\"\$PY\" -c '(.+?)' > \"\$WORK/instance.json\"", PART, re.S)[1]
    body = json.loads(
        subprocess.run(
            [sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    assert np.asarray(body["instances"]).shape == (1, 28, 28, 1)  # TF Serving's signature, without a reshape
    from trial.data import load_test

    assert (instances_to_pixels(body) == load_test(SAMPLE / "test.csv.gz")[:1].reshape(1, 28, 28, 1)).all()
