"""The container tier: the image built from our Dockerfile (on a debootstrap Debian base, with podman:
`make test-containers` runs scripts/containers.sh first), run as Katib and KFP run it. Real
containers, not mocks: the trial, the linter, the component modules, and the whole pipeline with
every step in its own container through kfp.local's DockerRunner and podman's Docker API."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.submission.predict import check_submission
from pipeline.workflow.definition import Budget
from pipeline.workflow.local_run import run_local
from tests.conftest import REPO, SAMPLE
from trial.metrics import parse_line

pytestmark = [pytest.mark.containers, pytest.mark.process]
IMAGE = os.environ.get("IMAGE", "localhost/katib-digits:test")


@pytest.fixture(scope="module", autouse=True)
def image():
    """The image must exist: this tier fails (it does not skip) when the set-up did not build it."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make test-containers` (scripts/containers.sh setup)")
    if subprocess.run(["podman", "image", "exists", IMAGE]).returncode != 0:
        pytest.fail(f"no image {IMAGE}: run `make test-containers` (scripts/containers.sh build)")
    return IMAGE


def podman_run(*args: str, volumes: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    mounts = [f"--volume={host}:{inside}:ro" for host, inside in (volumes or {}).items()]
    return subprocess.run(
        ["podman", "run", "--rm", *mounts, IMAGE, *args], capture_output=True, text=True, timeout=timeout
    )


def test_the_image_runs_as_the_non_root_user_of_the_dockerfile():
    ran = podman_run("id", "-u")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "1000"


def test_the_trial_reads_a_mounted_data_folder_and_prints_lines_katib_reads():
    ran = podman_run(
        "python",
        "-m",
        "trial",
        "--data",
        "/data/train.csv.gz",
        "--max-rows",
        "300",
        "--epochs",
        "1",
        volumes={str(SAMPLE): "/data"},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = [parse_line(line) for line in ran.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 1 and lines[0]["epoch"] == 1
    assert set(lines[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}
    assert 0 <= lines[0]["val_accuracy"] <= 1


def test_the_linter_passes_the_shipped_experiments_inside_the_image():
    ran = podman_run("sh", "-c", "katib-digits lint --strict experiments/*.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ": ok" in ran.stderr


def test_every_component_module_imports_in_the_image():
    code = (
        "import kfp.kubernetes, pipeline.workflow.components as c, pipeline.workflow.steps, "
        "pipeline.cluster.katib_api, pipeline.submission.predict, pipeline.workflow.reports; "
        "print(sorted(vars(c.make_components('x'))))"
    )
    ran = podman_run("python", "-c", code)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "['cleanup', 'export', 'predict', 'prepare', 'retrain', 'submit_gate', 'tune']"


SUGGESTION_CLIENT = """
import subprocess, sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeflow.katib import katib_api_pb2 as api, katib_api_pb2_grpc as api_grpc
from pipeline.lint import load
from pipeline.suggestion import request
service = subprocess.Popen([sys.executable, "-m", "pipeline.suggestion"])
channel = grpc.insecure_channel("localhost:6789")
grpc.channel_ready_future(channel).result(timeout=120)
health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="manager.v1beta1.Suggestion"), timeout=60)
exp = load("experiments/asha.yaml")
stub = api_grpc.SuggestionStub(channel)
stub.ValidateAlgorithmSettings(api.ValidateAlgorithmSettingsRequest(experiment=request.experiment(exp)), timeout=60)
reply = stub.GetSuggestions(request.get_suggestions(exp, [], 0, 3), timeout=60)
print(health_pb2.HealthCheckResponse.ServingStatus.Name(health.status), len(reply.parameter_assignments),
      sorted({a.value for p in reply.parameter_assignments for a in p.assignments if a.name == "epochs"}))
service.terminate()
sys.exit(service.wait(timeout=30))
"""


def test_the_asha_suggestion_service_serves_katibs_grpc_api_from_the_image():
    """What katib-config's asha entry runs (`python -m pipeline.suggestion` on port 6789), asked as Katib's
    controller and probes ask: health for manager.v1beta1.Suggestion, the settings check, three suggestions."""
    ran = podman_run("python", "-c", SUGGESTION_CLIENT)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split("\n")[0] == "SERVING 3 ['1']"  # three new configurations at the lowest rung
    assert "GetSuggestions digits-asha" in ran.stderr and "stopped" in ran.stderr


def test_the_whole_pipeline_runs_with_every_step_in_a_container(tmp_path, capsys):
    """kfp.local's DockerRunner: each step is `python3 -m kfp.dsl.executor_main` in the image, as KFP's
    launcher runs it on a cluster; outputs cross between steps only through the pipeline root."""
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("DOCKER_HOST is not set: `make test-containers` points it at podman's Docker API")
    budget = Budget(
        max_trial_count=2,
        parallel_trial_count=1,
        trial_max_rows=300,
        trial_epochs=1,
        retrain_epochs=1,
        retrain_ensemble=1,
    )
    summary = run_local(SAMPLE, REPO / "experiments" / "random.yaml", tmp_path / "out", budget, image=IMAGE)
    said = capsys.readouterr().out
    assert said.count("KFP Executor") >= 6 and "Got executor_input" in said  # the executor ran in each container
    assert summary["submitted"] and summary["retrain"]["epochs"] == 1
    submission = tmp_path / "out" / "submission.csv"
    check_submission(submission, 500, SAMPLE / "sample_submission.csv")
    with open(submission) as fh:
        assert len(list(csv.reader(fh))) == 501  # one row per test row of the file that was prepared
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "predict" / "submission").stat().st_uid == 1000  # written inside the image, as its user
    assert (tmp_path / "out" / "models" / "digits" / "1" / "saved_model.pb").is_file()  # the export step's SavedModel
    trial_logs = list((run_dir / "tune" / "tuned" / "dryrun" / "trials").glob("*/trial.log"))
    assert len(trial_logs) == 2 and all("epoch=1" in log.read_text() for log in trial_logs)
