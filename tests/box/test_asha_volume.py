"""experiments/asha.yaml's pod securityContext on a volume as most real storage gives it (the box's local
PersistentVolumes: root-owned, 0755, like a block-storage CSI volume): without fsGroup the trial, UID 1000,
cannot create its checkpoint folder and fails; with the shipped securityContext it writes its checkpoints."""

from __future__ import annotations

import pytest
import yaml

from tests.box.box import (
    COLLECTOR,
    NAMESPACE,
    REPO,
    condition,
    kubectl,
    pods_of_trial,
    run_experiment,
    small_budget,
    trials_of,
)

pytestmark = pytest.mark.cluster


def fresh_claim(name: str) -> None:
    """A new claim of deploy/asha-checkpoints-pvc.yaml's shape, so it binds to a volume no trial has written
    (fsGroup re-owns a volume for good: a volume once mounted with it would show nothing)."""
    claim = yaml.safe_load((REPO / "deploy" / "asha-checkpoints-pvc.yaml").read_text())
    claim["metadata"]["name"] = name
    kubectl("-n", NAMESPACE, "delete", "pvc", name, "--ignore-not-found", "--wait=true")
    kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump(claim))


def one_asha_trial(name: str, claim: str, security_context: bool) -> tuple[dict, str]:
    """One trial of the shipped asha on `claim`: the trial as Katib ended it, and what the trial printed."""
    raw = small_budget(REPO / "experiments" / "asha.yaml", 1)
    raw["metadata"]["name"] = name
    pod = raw["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "checkpoints"]
    volume["persistentVolumeClaim"]["claimName"] = claim
    if not security_context:
        del pod["securityContext"]
    run_experiment(raw, timeout_s=600)
    (trial,) = trials_of(name)
    (trial_pod,) = pods_of_trial(trial["metadata"]["name"])
    log = kubectl("-n", NAMESPACE, "logs", trial_pod["metadata"]["name"], "-c", COLLECTOR)
    kubectl("-n", NAMESPACE, "delete", "experiment", name, "--wait=true", timeout=300)
    return trial, log


@pytest.mark.timeout(1500)
def test_the_checkpoint_volume_needs_the_shipped_security_context(namespace):
    fresh_claim("asha-volume-without")
    trial, log = one_asha_trial("asha-volume-without", "asha-volume-without", security_context=False)
    assert (condition(trial, "Failed") or {}).get("status") == "True", trial["status"].get("conditions")
    assert "--checkpoint-dir /checkpoints/digits-asha: cannot create it (Permission denied)" in log, log[-2000:]

    fresh_claim("asha-volume-with")
    trial, log = one_asha_trial("asha-volume-with", "asha-volume-with", security_context=True)
    assert (condition(trial, "Succeeded") or {}).get("status") == "True", trial["status"].get("conditions")
    assert "Permission denied" not in log and "checkpoint not written" not in log, log[-2000:]
    for name in ("asha-volume-without", "asha-volume-with"):
        kubectl("-n", NAMESPACE, "delete", "pvc", name, "--wait=false")
