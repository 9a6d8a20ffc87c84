"""The Dockerfile without a Docker engine: hadolint-style rules on the parsed instructions, the build context
against .dockerignore, and a dry build: each stage's instructions applied in order to a scratch folder
(WORKDIR, COPY from the context, ARG, ENV) and its RUN steps run by /bin/sh with stand-ins for pip, python,
groupadd and useradd (tests/project/docker_build_stub.py) that record what they were asked. The tests read
from that record what each variant would install, and run the trial from the final stage's layout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO
from tests.project.docker_build_stub import requirements

STUB = Path(__file__).with_name("docker_build_stub.py")
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
    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    for image in froms:
        python = image.partition(":")[2].split("-")[0]
        assert python in requires, f"{image}: Python {python} is outside the project's requires-python {requires}"


def test_final_stage_copies_the_venv_and_runs_as_non_root():
    assert any(c.cmd == "COPY" and "--from=build" in c.flags and c.value[0] == "/opt/venv" for c in FINAL)
    users = [c.value[0] for c in FINAL if c.cmd == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root UID (runAsNonRoot can verify it)"
    runs = " ".join(c.value[0] for c in FINAL if c.cmd == "RUN")
    assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", runs), "no installs in the final stage"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.cmd == "RUN"], ids=lambda c: f"line{c.start_line}")
def test_run_instructions_fetch_nothing_themselves_and_clean_apt(cmd):
    """hadolint DL3009/DL3015 for apt; no sudo, curl or wget. pip's cache: the dry build checks every install."""
    text = cmd.value[0]
    if "apt-get install" in text:
        assert "--no-install-recommends" in text and "rm -rf /var/lib/apt/lists" in text
    assert not re.search(r"\b(sudo|curl|wget)\b", text)


def test_no_add_and_no_package_index_of_its_own():
    """hadolint DL3020 (COPY, not ADD); pip uses the index the build's environment gives it, none set here."""
    assert not any(c.cmd == "ADD" for c in COMMANDS)
    assert not any(re.search(r"--(extra-)?index-url", c.value[0]) for c in COMMANDS if c.cmd == "RUN")
    env = {c.value[i] for c in COMMANDS if c.cmd == "ENV" for i in range(0, len(c.value), 2)}
    assert not env & {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"}


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


# --- a dry build ----------------------------------------------------------------------------------------------

STAND_INS = ("pip", "python", "groupadd", "useradd")
REAL_TOOLS = ("sed",)  # what the RUN steps use besides the shell and the stand-ins (`pip show | sed`)


@dataclass
class Built:
    returncode: int
    stderr: str
    root: Path  # the image's / here
    workdir: Path  # its WORKDIR, under root
    env: dict[str, str]  # its ENV (and the stage's ARGs) at the end
    calls: list[dict[str, Any]]  # every stand-in call, in order

    def tool(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == name]

    def installs(self) -> list[dict[str, Any]]:
        return [c for c in self.tool("pip") if c["args"][:1] == ["install"]]


def _ignored_names(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if ignored(str((Path(folder) / n).relative_to(REPO)))]


def _copy(c, root: Path, workdir: Path) -> None:
    """COPY from the build context: a folder's contents go into dest; a file into a dest ending in / or ."""
    *srcs, dest = c.value
    base = root / (workdir / dest).relative_to("/")
    for src in srcs:
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, base, dirs_exist_ok=True, ignore=_ignored_names)
        else:
            target = base / Path(src).name if dest.endswith("/") or dest == "." else base
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / src, target)


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), value)


def dry_build(stage: list, tmp: Path, **build_args: str) -> Built:
    """Apply `stage`'s instructions in order under tmp/image; RUN steps by /bin/sh with the stand-ins on PATH
    (and the stage's ARGs, build_args overriding their defaults, in the environment, as Docker passes them)."""
    root, stand_ins, tools, log = tmp / "image", tmp / "stand-ins", tmp / "tools", tmp / "build.jsonl"
    for folder in (root / "tmp", stand_ins, tools):
        folder.mkdir(parents=True)
    stub = tmp / "stand-in"
    stub.write_text(f"#!{sys.executable}\n" + STUB.read_text())
    stub.chmod(0o755)
    for name in STAND_INS:
        (stand_ins / name).symlink_to(stub)
    for name in REAL_TOOLS:
        (tools / name).symlink_to(shutil.which(name) or f"/usr/bin/{name}")
    env = {"PATH": f"{stand_ins}:{tools}", "HOME": str(tmp), "BUILD_LOG": str(log)}
    workdir, rc, stderr = Path("/"), 0, ""
    for c in stage:
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            env[name] = build_args.get(name, default)
        elif c.cmd == "ENV":
            for i in range(0, len(c.value), 2):
                env[c.value[i]] = _expand(c.value[i + 1], env)
        elif c.cmd == "WORKDIR":
            workdir = workdir / c.value[0]
            (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif from_context(c):
            _copy(c, root, workdir)
        elif c.cmd == "RUN":
            script = c.value[0].replace("/tmp/", f"{root}/tmp/")  # the image's /tmp, here
            ran = subprocess.run(
                ["/bin/sh", "-c", script],
                cwd=root / workdir.relative_to("/"),
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if ran.returncode != 0:
                rc, stderr = ran.returncode, ran.stderr
                break
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Built(rc, stderr, root, root / workdir.relative_to("/"), env, calls)


def project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def cpu_build(tmp_path_factory) -> Built:
    built = dry_build(stages()[0], tmp_path_factory.mktemp("cpu"))
    assert built.returncode == 0, built.stderr
    return built


@pytest.mark.process
def test_the_build_stage_installs_the_pinned_dependencies_then_the_unpinnable_then_the_project(cpu_build):
    """As `make setup` does: pyproject's dependencies, then requirements-nodeps.txt without dependencies, then
    the project itself (here without dependencies: they are all in already)."""
    first, nodeps, own = cpu_build.installs()
    assert first["requirements"] == project()["project"]["dependencies"]
    assert "--no-deps" not in first["args"]
    assert nodeps["requirements"] == requirements(REPO / "requirements-nodeps.txt") and "--no-deps" in nodeps["args"]
    assert own["args"][-1] == "." and "--no-deps" in own["args"]
    # `make setup` (make -n: what it would run) installs the same file the same way
    make = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=REPO, capture_output=True, text=True)
    assert any(
        line.split()[-3:] == ["--no-deps", "-r", "requirements-nodeps.txt"] for line in make.stdout.splitlines()
    ), make.stdout
    for install in cpu_build.installs():
        assert "--no-cache-dir" in install["args"], install["args"]  # hadolint DL3042
        assert install["env"].get("PIP_NO_CACHE_DIR") == "1"


@pytest.mark.process
def test_the_project_install_sees_what_setuptools_needs(cpu_build):
    (own,) = [c for c in cpu_build.installs() if c["args"][-1] == "."]
    meta = project()
    packages = {name.split(".")[0] for name in meta["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = {"pyproject.toml", meta["project"]["readme"], *packages}
    assert needed <= set(own["tree"]), (
        f"missing in the build stage's /src at `pip install .`: {needed - set(own['tree'])}"
    )
    src = Path(own["cwd"])
    assert all((src / package / "__init__.py").is_file() for package in packages)


@pytest.mark.process
def test_the_build_stage_makes_its_venv_first_and_checks_its_imports_last(cpu_build):
    (check,) = [c for c in cpu_build.tool("python") if "modules" in c]
    assert {"kfp", "kubernetes", "optuna", "tensorflow"} <= set(check["modules"])  # found in this environment too
    assert cpu_build.tool("python")[0]["args"] == ["-m", "venv", "/opt/venv"]
    at = [cpu_build.calls.index(c) for c in cpu_build.installs()]
    assert at[1] < cpu_build.calls.index(check) < at[2], "the imports checked once every dependency is in"
    assert cpu_build.env["PATH"].startswith("/opt/venv/bin:"), "the venv's pip and python come first"


@pytest.mark.process
def test_a_pip_cert_given_reaches_every_pip(tmp_path):
    built = dry_build(stages()[0], tmp_path, PIP_CERT="/certs/proxy.pem")
    assert built.returncode == 0, built.stderr
    assert len(built.installs()) == 3
    assert all(install["env"].get("PIP_CERT") == "/certs/proxy.pem" for install in built.installs())


@pytest.mark.process
def test_the_gpu_variant_swaps_tensorflow_cpu_for_the_same_tensorflow_with_cuda(tmp_path):
    built = dry_build(stages()[0], tmp_path, VARIANT="gpu")
    assert built.returncode == 0, built.stderr
    (pinned,) = [d for d in project()["project"]["dependencies"] if d.startswith("tensorflow-cpu==")]
    version = pinned.split("==")[1]
    pips = [c["args"] for c in built.tool("pip")]
    swap = pips.index(["uninstall", "--yes", "tensorflow-cpu"])
    assert pips[swap - 1] == ["show", "tensorflow-cpu"]
    assert pips[swap + 1] == ["install", "--no-cache-dir", f"tensorflow[and-cuda]=={version}"]
    assert pips[-1][-1] == "."  # then the project, as for cpu


@pytest.mark.process
def test_an_unknown_variant_fails_the_build(tmp_path):
    built = dry_build(stages()[0], tmp_path, VARIANT="rocm")
    assert built.returncode == 1 and "VARIANT must be cpu or gpu, not rocm" in built.stderr
    assert not [c for c in built.installs() if c["args"][-1] == "."]


# --- the final stage: its user, its layout, the trial run from it ------------------------------------------------


@pytest.fixture(scope="module")
def final_build(tmp_path_factory) -> Built:
    built = dry_build(FINAL, tmp_path_factory.mktemp("final"))
    assert built.returncode == 0, built.stderr
    return built


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.process
def test_the_user_it_makes_is_the_one_it_runs_as_with_the_home_it_sets(final_build):
    (group,), (user,) = final_build.tool("groupadd"), final_build.tool("useradd")
    uid, _, gid = [c.value[0] for c in FINAL if c.cmd == "USER"][-1].partition(":")
    assert (option(user["args"], "--uid"), option(user["args"], "--gid"), option(group["args"], "--gid")) == (
        uid,
        gid,
        gid,
    )
    assert "--create-home" in user["args"] and final_build.env["HOME"] == f"/home/{user['args'][-1]}"


@pytest.mark.process
def test_final_stage_layout_runs_the_trial(final_build, tmp_path):
    root, workdir = final_build.root, final_build.workdir
    assert not final_build.tool("pip") and not final_build.tool("python"), "the final stage installs nothing"
    assert final_build.env["PYTHONPATH"] == "/app" and workdir == root / "app"
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
