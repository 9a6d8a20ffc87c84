"""The pipeline's definition: the compiled IR (parsed as a PipelineSpec) and its run arguments."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.cli import main as cli_main
from pipeline.errors import UserError
from pipeline.workflow.definition import Budget, build_pipeline, compile_pipeline, pipeline_arguments

IMAGE = "registry.example.com/katib-digits:custom"  # not the default (pipeline.image.IMAGE)


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> list[dict]:
    """The IR YAML: the PipelineSpec, then the platform spec (what kfp-kubernetes sets)."""
    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "pipeline.yaml", IMAGE, ("regcred",))
    return list(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module")
def spec(documents) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def platform(documents) -> dict:
    return documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def executors(spec) -> dict:
    return json_format.MessageToDict(spec.deployment_spec)["executors"]


def test_compiled_ir_has_the_steps_in_order(spec):
    root = spec.root.dag.tasks
    assert set(root) == {"exit-handler-1", "cleanup"}
    # the exit handler runs whatever happened to the steps inside it (a terminated run included)
    strategy = root["cleanup"].trigger_policy.strategy
    assert (
        pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.Name(strategy)
        == "ALL_UPSTREAM_TASKS_COMPLETED"
    )
    assert list(root["cleanup"].dependent_tasks) == ["exit-handler-1"]
    steps = spec.components["comp-exit-handler-1"].dag.tasks
    assert set(steps) == {"prepare", "tune", "submit-gate", "condition-2"}
    assert list(steps["tune"].dependent_tasks) == ["prepare"]
    assert list(steps["submit-gate"].dependent_tasks) == ["tune"]
    inner = spec.components["comp-condition-2"].dag.tasks
    assert set(inner) == {"retrain", "predict", "export"}
    assert list(inner["predict"].dependent_tasks) == ["retrain"]
    assert list(inner["export"].dependent_tasks) == ["retrain"]
    assert inner["export"].inputs.artifacts["model"].task_output_artifact.producer_task == "retrain"
    assert not inner["export"].caching_options.enable_cache  # it publishes a version on the volume


def test_the_if_gate_reads_the_gate_steps_output(spec):
    condition = spec.components["comp-exit-handler-1"].dag.tasks["condition-2"].trigger_policy.condition
    assert condition == "inputs.parameter_values['pipelinechannel--submit-gate-Output'] == true"


def test_every_step_runs_our_image_without_installing_kfp(spec):
    found = executors(spec)
    assert set(found) == {
        f"exec-{n}" for n in ("prepare", "tune", "submit-gate", "retrain", "predict", "export", "cleanup")
    }
    for name, executor in found.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        assert not any("pip install" in part for part in container["command"]), name


def test_pipeline_parameters_and_defaults(spec):
    params = spec.root.input_definitions.parameters
    assert set(params) == {
        "data_dir",
        "data_pvc",
        "experiment",
        "trial_image",
        "backend",
        "max_trial_count",
        "parallel_trial_count",
        "trial_max_rows",
        "trial_epochs",
        "retrain_epochs",
        "retrain_val_fraction",
        "retrain_ensemble",
        "threshold",
        "namespace",
        "timeout_s",
        "delete_after",
        "export_dir",
        "tune_state_dir",
    }
    assert params["backend"].default_value.string_value == "katib"
    assert params["experiment"].default_value.string_value == "experiments/random.yaml"
    # on a cluster the data is the volume's, not the image's sample; the trials run the compiled image
    assert params["data_dir"].default_value.string_value == "/data"
    assert params["data_pvc"].default_value.string_value == "digit-recognizer-data"
    assert params["trial_image"].default_value.string_value == IMAGE
    # on a cluster the export step adds a version where deploy/kserve/inferenceservice.yaml's storageUri points
    assert params["export_dir"].default_value.string_value == "/data/models/digits"
    # only a local run keeps its tune across runs; on a server it stays in the step's artifact
    assert params["tune_state_dir"].default_value.string_value == ""
    assert spec.pipeline_info.name == "katib-digits"


def test_every_pipeline_parameter_is_described_for_the_ui(spec):
    params = spec.root.input_definitions.parameters
    assert all(params[name].description for name in params), [n for n in params if not params[n].description]
    assert "mounted at /data" in params["data_pvc"].description


def test_prepare_reads_the_data_volume_the_trials_read(platform):
    (mount,) = platform["exec-prepare"]["pvcMount"]
    assert mount["mountPath"] == "/data"
    assert mount["pvcNameParameter"] == {"componentInputParameter": "pipelinechannel--data_pvc"}
    # export writes the SavedModel there too; no other step touches the volume
    assert {e for e in platform if "pvcMount" in platform[e]} == {"exec-prepare", "exec-export"}
    assert platform["exec-export"]["pvcMount"] == [mount]


def test_every_step_has_a_timeout_retries_and_the_pull_secret(spec, platform):
    for name in ("prepare", "tune", "retrain", "predict", "export", "cleanup"):
        assert int(platform[f"exec-{name}"]["activeDeadlineSeconds"]) >= 600, name
        assert [s["secretName"] for s in platform[f"exec-{name}"]["imagePullSecret"]] == ["regcred"], name
    steps = spec.components["comp-exit-handler-1"].dag.tasks
    assert steps["tune"].retry_policy.max_retry_count == 2 and steps["prepare"].retry_policy.max_retry_count == 2
    assert not steps["prepare"].caching_options.enable_cache  # changed data under one folder name is new data


def all_tasks(spec) -> dict:
    tasks = dict(spec.root.dag.tasks)
    for component in spec.components.values():
        tasks.update(component.dag.tasks)
    return tasks


def test_retries_outlast_each_steps_own_timeout(spec, platform):
    """Argo ends retries (and kills a running retry) backoffMaxDuration after the first attempt started;
    kfp's default is 3600 s, less than one tune or retrain attempt may take."""
    retried = {name: task.retry_policy for name, task in all_tasks(spec).items() if task.HasField("retry_policy")}
    assert set(retried) == {"prepare", "tune", "retrain", "predict", "export", "cleanup"}
    for name, policy in retried.items():
        timeout = int(platform[f"exec-{name}"]["activeDeadlineSeconds"])
        waits = sum(policy.backoff_duration.seconds * policy.backoff_factor**i for i in range(policy.max_retry_count))
        assert policy.backoff_max_duration.seconds >= (policy.max_retry_count + 1) * timeout + waits, name
    assert retried["tune"].backoff_max_duration.seconds > 3 * 48 * 3600


def test_tune_and_cleanup_know_the_run_id(spec):
    steps = spec.components["comp-exit-handler-1"].dag.tasks
    run_id = steps["tune"].inputs.parameters["run_id"].runtime_value.constant.string_value
    assert run_id == "{{$.pipeline_job_uuid}}"
    cleanup = spec.root.dag.tasks["cleanup"].inputs.parameters["run_id"].runtime_value.constant.string_value
    assert cleanup == run_id


def test_artifacts_are_typed(spec):
    outputs = spec.components["comp-prepare"].output_definitions.artifacts
    assert outputs["train_data"].artifact_type.schema_title == "system.Dataset"
    tune_out = spec.components["comp-tune"].output_definitions
    assert tune_out.artifacts["metrics"].artifact_type.schema_title == "system.Metrics"
    assert set(tune_out.parameters) == {"objective", "objective_type", "optimal_trial"}
    assert (
        spec.components["comp-retrain"].output_definitions.artifacts["model"].artifact_type.schema_title
        == "system.Model"
    )


def test_compile_command_names_the_image(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "compile", "-o", str(out), "--image", "me/digits:dev"])
    assert exit_info.value.code == 0
    assert "image: me/digits:dev" in out.read_text()


def test_pipeline_arguments_cover_every_parameter(spec):
    args = pipeline_arguments(
        "/data",
        "experiments/tpe.yaml",
        "katib",
        Budget(max_trial_count=9),
        "team-a",
        60,
        data_pvc="my-data",
        trial_image="me/digits:1",
    )
    assert set(args) == set(spec.root.input_definitions.parameters)
    assert args["max_trial_count"] == 9 and args["namespace"] == "team-a" and args["backend"] == "katib"
    with pytest.raises(UserError, match="backend: 'kubeflow' is not one of katib, optuna"):
        pipeline_arguments("/data", "x.yaml", "kubeflow", Budget())


def test_the_local_run_has_no_retries(tmp_path):
    """kfp.local honours retry policies: a step failing on bad input would run three times, 90 s of pauses."""
    from kfp import compiler

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_pipeline(IMAGE, retries=False), str(path))
    local = json_format.ParseDict(next(yaml.safe_load_all(path.read_text())), pipeline_spec_pb2.PipelineSpec())
    steps = local.components["comp-exit-handler-1"].dag.tasks
    assert all(not steps[name].HasField("retry_policy") for name in ("prepare", "tune"))
