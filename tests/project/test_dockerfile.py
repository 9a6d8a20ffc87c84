"""Static checks of the Dockerfile (no Docker engine here): hadolint-style rules
on the parsed instructions, the build context against .dockerignore, the
install steps against the project's, and a dry "build" that lays out the final
stage's COPYs in a temp dir and runs the trial from it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest

from tests.conftest import REPO

COMMANDS = dockerfile.parse_file(str(REPO / "Dockerfile"))


def stages() -> list[list]:
    out: list[list] = []
    for cmd in COMMANDS:
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


FINAL = stages()[-1]


def build_args() -> dict[str, str]:
    return dict(c.value[0].split("=", 1) for c in COMMANDS if c.cmd == "ARG" and "=" in c.value[0])


def resolve(text: str) -> str:
    args = build_args()
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), text)


def from_context(cmd) -> bool:
    return cmd.cmd == "COPY" and not any(f.startswith("--from") for f in cmd.flags)


def copied_sources(stage=None) -> set[str]:
    return {src for c in (stage if stage is not None else COMMANDS) if from_context(c) for src in c.value[:-1]}


# --- .dockerignore (Docker's rules, approximated: last matching pattern wins,
# a pattern that matches a folder matches everything under it) ---------------------


def _pattern(p: str) -> re.Pattern:
    rx, i, p = "", 0, p.strip("/")
    while i < len(p):
        if p.startswith("**/", i):
            rx, i = rx + "(.*/)?", i + 3
        elif p.startswith("**", i):
            rx, i = rx + ".*", i + 2
        elif p[i] == "*":
            rx, i = rx + "[^/]*", i + 1
        elif p[i] == "?":
            rx, i = rx + "[^/]", i + 1
        else:
            rx, i = rx + re.escape(p[i]), i + 1
    return re.compile(rx + "$")


RULES = [
    (line.startswith("!"), _pattern(line.lstrip("!")))
    for line in (REPO / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def ignored(rel: str) -> bool:
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, rx in RULES:
        if any(rx.match(p) for p in prefixes):
            excluded = not negated
    return excluded


# --- hadolint-style rules ----------------------------------------------------------------


def test_base_images_are_pinned_slim_python():
    froms = [resolve(c.value[0]) for c in COMMANDS if c.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a final stage"
    for image in froms:
        name, _, tag = image.partition(":")
        assert name == "python" and tag, image
        assert "latest" not in tag and re.match(r"3\.11\.\d+-slim", tag), f"pin the full version: {image}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.10,<3.13"  # 3.11 is inside; update both together


def test_final_stage_copies_the_venv_and_runs_as_non_root():
    assert any(c.cmd == "COPY" and "--from=build" in c.flags and c.value[0] == "/opt/venv" for c in FINAL)
    users = [c.value[0] for c in FINAL if c.cmd == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root UID (runAsNonRoot can verify it)"
    runs = " ".join(c.value[0] for c in FINAL if c.cmd == "RUN")
    assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", runs), "no installs in the final stage"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.cmd == "RUN"], ids=lambda c: f"line{c.start_line}")
def test_run_instructions_leave_no_caches(cmd):
    text = cmd.value[0]
    installs = re.findall(r"pip install[^&;]*", text)
    for install in installs:
        assert "--no-cache-dir" in install, install
    if "apt-get install" in text:
        assert "--no-install-recommends" in text and "rm -rf /var/lib/apt/lists" in text
    assert not re.search(r"\b(sudo|curl|wget)\b", text)


def test_no_latest_no_add_no_registry_hosts():
    text = (REPO / "Dockerfile").read_text()
    assert ":latest" not in text
    assert not any(c.cmd == "ADD" for c in COMMANDS)
    assert not re.search(r"--(extra-)?index-url", text)  # pattern, not the literal flag: no index address here


def test_cmd_is_exec_form_and_there_is_no_entrypoint():
    assert not any(c.cmd == "ENTRYPOINT" for c in COMMANDS), "Katib and KFP set the command"
    assert [c for c in COMMANDS if c.cmd == "CMD"] and all(c.json for c in COMMANDS if c.cmd == "CMD")


# --- build context -------------------------------------------------------------------


@pytest.mark.parametrize("src", sorted(copied_sources()))
def test_every_copy_source_exists_and_is_in_the_context(src):
    path = REPO / src
    assert path.exists(), f"COPY {src}: missing in the repository"
    assert not ignored(src), f"COPY {src}: excluded by .dockerignore"
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    assert any(not ignored(str(p.relative_to(REPO))) for p in files), f"COPY {src}: no file reaches the build"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "runs/x/model.keras",
        "local_outputs/a",
        ".git/HEAD",
        "data/digit-recognizer/train.csv",
        "data/train.csv",
        "pipeline/__pycache__/a.pyc",
    ],
)
def test_dockerignore_keeps_out(path):
    assert ignored(path)


# --- the install steps match the project's -------------------------------------------------


def test_install_steps_match_make_setup():
    build_runs = " ".join(c.value[0] for c in stages()[0] if c.cmd == "RUN")
    make = (REPO / "Makefile").read_text()
    assert "pip install -q --no-deps -r requirements-nodeps.txt" in make
    assert "tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']" in build_runs, (
        "the pinned dependencies, read from pyproject.toml"
    )
    assert re.search(r"pip install --no-cache-dir -r /tmp/requirements.txt", build_runs)
    assert re.search(r"pip install --no-cache-dir --no-deps \.$", build_runs.strip()), "then the project itself"
    assert "pip install --no-cache-dir --no-deps -r requirements-nodeps.txt" in build_runs
    copied = copied_sources(stages()[0])
    assert {"pyproject.toml", "requirements-nodeps.txt"} <= copied
    # Every package setuptools installs must be in the build stage's context.
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.split(".")[0] + "/" for name in include} <= copied


def test_gpu_variant_swaps_the_pinned_tensorflow():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(r"tensorflow-cpu==[\d.]+", d) for d in deps), "the GPU swap reads tensorflow-cpu's version"
    run = " ".join(c.value[0] for c in stages()[0] if c.cmd == "RUN")
    assert "pip show tensorflow-cpu" in run and "tensorflow[and-cuda]==${tf_version}" in run


# --- a dry build: lay out the final stage and run the trial from it ------------------------------


def _ignored_names(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if ignored(str((Path(folder) / n).relative_to(REPO)))]


def lay_out_final_stage(root: Path) -> Path:
    """Apply the final stage's COPYs from the build context under `root`; return its WORKDIR."""
    workdir = Path("/")
    for c in FINAL:
        if c.cmd == "WORKDIR":
            workdir = workdir / c.value[0]
        if from_context(c):
            *srcs, dest = c.value
            base = root / (workdir / dest).relative_to("/")
            for src in srcs:  # a folder's contents go into dest; a file into a dest ending in / or .
                if (REPO / src).is_dir():
                    shutil.copytree(REPO / src, base, dirs_exist_ok=True, ignore=_ignored_names)
                else:
                    target = base / Path(src).name if dest.endswith("/") or dest == "." else base
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / src, target)
    return root / workdir.relative_to("/")


@pytest.mark.process
def test_final_stage_layout_runs_the_trial(tmp_path):
    root = tmp_path / "image"
    workdir = lay_out_final_stage(root)
    env = {c.value[i]: c.value[i + 1] for c in FINAL if c.cmd == "ENV" for i in range(0, len(c.value), 2)}
    assert env["PYTHONPATH"] == "/app" and workdir == root / "app"
    run_env = {**os.environ, "PYTHONPATH": str(root / "app"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # From another folder: the sources under /app are the ones imported, and the default data is there.
    probe = subprocess.run(
        [sys.executable, "-c", "import trial.cli as c, pipeline; print(c.DEFAULT_DATA); print(pipeline.__file__)"],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    default_data, pipeline_file = probe.stdout.split()
    assert Path(default_data) == root / "app" / "data" / "sample" / "train.csv.gz"
    assert Path(default_data).is_file()
    assert Path(pipeline_file).is_relative_to(root / "app")
    helped = subprocess.run(
        [sys.executable, "-m", "trial", "--help"], cwd=workdir, env=run_env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--learning-rate" in helped.stdout, helped.stderr
