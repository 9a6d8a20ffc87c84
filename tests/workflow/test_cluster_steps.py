"""What the pipeline's steps do on a cluster, checked here without one: the Experiment the tune step
creates (image, data volume, pull secrets), the same-data rule, the Experiment sent with a run, the
run link, the component files, the reports and the submission's row check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kfp import components

from pipeline.errors import UserError
from pipeline.image import IMAGE
from pipeline.katib.experiment import load_unchecked
from pipeline.workflow import steps
from pipeline.workflow.definition import compile_components, experiment_argument
from pipeline.workflow.reports import html_report, markdown_trials
from pipeline.workflow.server_run import run_url
from tests.conftest import REPO, SAMPLE

RANDOM = REPO / "experiments" / "random.yaml"


def test_the_shipped_experiment_reads_the_data_volume():
    assert steps.trial_data(load_unchecked(RANDOM)) == ("/data/train.csv.gz", "digit-recognizer-data", "train.csv.gz")


def test_the_tune_step_applies_image_volume_and_pull_secrets():
    exp = steps.for_cluster(load_unchecked(RANDOM), "registry.example.com/digits:2", "team-data", ["regcred"])
    assert exp.primary_container()["image"] == "registry.example.com/digits:2"
    assert steps.trial_data(exp)[1] == "team-data"
    assert exp.trial_spec["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert load_unchecked(RANDOM).primary_container()["image"] == IMAGE  # the file is untouched


SAME_NS = {"experiment_namespace": "team-a", "data_namespace": "team-a"}


def test_same_data_passes_when_trials_and_retrain_read_one_file():
    steps.require_same_data(
        steps.for_cluster(load_unchecked(RANDOM), data_pvc="team-data"), "team-data", "/data", "train.csv.gz", **SAME_NS
    )


@pytest.mark.parametrize(
    "data_pvc, data_dir, message",
    [
        ("other-claim", "/data", "claim team-a/digit-recognizer-data"),  # the YAML's claim, not the pipeline's
        ("digit-recognizer-data", "/data/full", "full/train.csv.gz"),  # another folder on the same claim
        ("digit-recognizer-data", "data/sample", "pass a folder under /data"),  # the image's sample
    ],
)
def test_the_tune_step_refuses_to_tune_on_other_data_than_the_retrain(data_pvc, data_dir, message):
    with pytest.raises(UserError, match=message):
        steps.require_same_data(load_unchecked(RANDOM), data_pvc, data_dir, "train.csv.gz", **SAME_NS)


def test_trials_reading_the_images_own_files_are_refused():
    exp = load_unchecked(RANDOM)
    exp.primary_container()["volumeMounts"] = []
    with pytest.raises(UserError, match="the image's own files"):
        steps.require_same_data(exp, "digit-recognizer-data", "/data", "train.csv.gz", **SAME_NS)


def test_the_same_claim_name_in_another_namespace_is_other_data():
    """Standalone KFP runs its steps in its own namespace (kubeflow): a claim of the same name in the
    Experiment's namespace is another volume."""
    with pytest.raises(UserError) as err:
        steps.require_same_data(
            load_unchecked(RANDOM),
            "digit-recognizer-data",
            "/data",
            "train.csv.gz",
            experiment_namespace="katib-digits",
            data_namespace="kubeflow",
        )
    assert str(err.value) == (
        f"{RANDOM}: the trials read /data/train.csv.gz (claim katib-digits/digit-recognizer-data, train.csv.gz) "
        "but the retrain would read /data/train.csv.gz (claim kubeflow/digit-recognizer-data, train.csv.gz): "
        "tuning on other data than the submission is trained on; run the Experiment in the run's namespace "
        "(namespace 'kubeflow', or empty) and keep the claim there"
    )


def test_the_tune_step_checks_the_claims_namespace_before_creating_anything(tmp_path):
    cluster = {"data_pvc": "digit-recognizer-data", "data_dir": "/data", "data_namespace": "kubeflow"}
    with pytest.raises(UserError, match="claim katib-digits/digit-recognizer-data.*claim kubeflow/digit-"):
        steps.tune(load_unchecked(RANDOM), "katib", tmp_path, namespace="katib-digits", cluster=cluster)


def test_the_experiment_is_owned_by_the_tune_pod_only_in_its_own_namespace():
    env = {"KFP_POD_NAME": "katib-digits-abc12-system-container-impl-1234", "KFP_POD_UID": "9f0c-uid"}
    assert steps.step_pod_owner("kubeflow", env, pod_namespace="kubeflow") == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "katib-digits-abc12-system-container-impl-1234",
        "uid": "9f0c-uid",
    }
    assert steps.step_pod_owner("katib-digits", env, pod_namespace="kubeflow") is None  # GC would delete it at once
    assert steps.step_pod_owner("kubeflow", {}, pod_namespace="kubeflow") is None  # not a KFP step


def test_a_local_experiment_file_is_sent_with_the_run(tmp_path):
    """Not its path (the pod would look for it in the image): one-line JSON the step reads back."""
    sent = experiment_argument(str(RANDOM))
    assert "\n" not in sent and json.loads(sent)["metadata"]["name"] == "digits-random"
    back = steps.read_experiment(sent)
    assert back.source == str(RANDOM)  # the step's messages name the file it came from
    assert back.raw["metadata"].pop("annotations") == {steps.SOURCE_ANNOTATION: str(RANDOM)}
    assert back.raw == load_unchecked(RANDOM).raw
    assert experiment_argument("experiments/in-the-image.yaml") == "experiments/in-the-image.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(RANDOM.read_text().replace("type: maximize", "type: maximise"))
    with pytest.raises(UserError, match="spec.objective.type"):  # checked here, before the run is made
        experiment_argument(str(bad))


@pytest.mark.parametrize(
    "host, url",
    [
        ("http://localhost:8080", "http://localhost:8080/#/runs/details/r1"),  # standalone KFP / port-forward
        ("https://kubeflow.example.com/pipeline", "https://kubeflow.example.com/_/pipeline/#/runs/details/r1"),
        ("https://kubeflow.example.com/pipeline/", "https://kubeflow.example.com/_/pipeline/#/runs/details/r1"),
    ],
)
def test_run_link_points_at_the_ui(host, url):
    assert run_url(host, "r1") == url
    assert run_url(host, "r1", ui_host="https://ui.example.com") == "https://ui.example.com/#/runs/details/r1"


def test_component_files_load_in_another_pipeline(tmp_path):
    written = compile_components(tmp_path, "me/digits:1")
    assert {p.stem for p in written} == {"prepare", "tune", "submit_gate", "retrain", "predict", "export", "cleanup"}
    tune = components.load_component_from_file(str(tmp_path / "tune.yaml"))
    assert {"experiment", "data_pvc", "trial_image", "run_id"} <= set(tune.component_spec.inputs)
    assert tune.component_spec.implementation.container.image == "me/digits:1"


def test_reports_show_the_best_trial_and_every_trial(tmp_path):
    final = json.loads((REPO / "tests" / "cluster" / "fixtures" / "katib" / "experiment-succeeded.json").read_text())
    csv_file = tmp_path / "trials.csv"
    csv_file.write_text("name,state,lr\nt-1,Succeeded,0.01\nt-2,Failed,0.5\n")
    text = markdown_trials(final, csv_file)
    assert "### Best trial darts-example-n4fpnxlm" in text and "| t-2 | Failed | 0.5 |" in text
    assert "| 1 | 1 | 0 |" in text  # trials, then Succeeded, Failed
    page = html_report(final)
    assert page.startswith("<!doctype html>") and "darts-example-n4fpnxlm" in page


def test_stop_experiments_is_a_no_op_without_katib(capsys):
    assert steps.stop_experiments("optuna", "", "run-1") == []
    assert "nothing to stop" in capsys.readouterr().out


def test_predict_refuses_another_test_file_than_the_prepared_one(tmp_path):
    from pipeline.submission.predict import predict_submission

    with pytest.raises(UserError, match="500 test rows, but the prepare step counted 28000"):
        predict_submission(
            tmp_path / "no-model-needed", SAMPLE / "test.csv.gz", tmp_path / "s.csv", expected_rows=28000
        )


def test_submit_passes_the_login_and_returns_the_ui_link(monkeypatch, tmp_path):
    """kfp.Client contacts the server in its constructor, so it is replaced by a recorder here."""
    import kfp

    from pipeline.workflow.server_run import submit

    made: dict[str, Any] = {}

    class Recorder:
        def __init__(self, **kwargs):
            made["client"] = kwargs

        def create_run_from_pipeline_package(self, package, **kwargs):
            made["run"] = kwargs
            made["package"] = Path(package).read_text()
            return type("Run", (), {"run_id": "r-42"})()

    monkeypatch.setattr(kfp, "Client", Recorder)
    url = submit(
        "https://kubeflow.example.com/pipeline",
        {"backend": "katib"},
        "me/digits:1",
        "team-a",
        token="t0k",
        cookies="authservice_session=abc",
        image_pull_secrets=("regcred",),
    )
    assert url == "https://kubeflow.example.com/_/pipeline/#/runs/details/r-42"
    assert made["client"] == {
        "host": "https://kubeflow.example.com/pipeline",
        "namespace": "team-a",
        "existing_token": "t0k",
        "cookies": "authservice_session=abc",
    }
    assert made["run"]["service_account"] is None  # KFP's own runner unless asked
    assert "regcred" in made["package"]
