"""The KFP pipeline: compiled IR (parsed as a PipelineSpec), run arguments, and whole local runs."""
from __future__ import annotations

import csv
import gzip
import json
import re
import shutil

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.workflow import steps
from pipeline.cli import main as cli_main
from pipeline.errors import UserError
from pipeline.workflow.kfp_pipeline import (LOCAL_BUDGET, Budget, _failed_step, _Tee, compile_pipeline, local_budget,
                                            pipeline_arguments, run_local)
from pipeline.katib.experiment import Experiment, load
from pipeline.submission.predict import check_submission
from tests.conftest import REPO, SAMPLE

IMAGE = "registry.example.com/katib-digits:1.2.3"
LOCAL_EXPERIMENT = REPO / "experiments" / "random.yaml"


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
    assert pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.Name(strategy) == \
        "ALL_UPSTREAM_TASKS_COMPLETED"
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
    assert set(found) == {f"exec-{n}" for n in ("prepare", "tune", "submit-gate", "retrain", "predict", "export",
                                                 "cleanup")}
    for name, executor in found.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        assert not any("pip install" in part for part in container["command"]), name


def test_pipeline_parameters_and_defaults(spec):
    params = spec.root.input_definitions.parameters
    assert set(params) == {"data_dir", "data_pvc", "experiment", "trial_image", "backend", "max_trial_count",
                           "parallel_trial_count", "trial_max_rows", "trial_epochs", "retrain_epochs",
                           "retrain_val_fraction", "retrain_ensemble", "threshold",
                           "namespace", "timeout_s", "delete_after", "export_dir"}
    assert params["backend"].default_value.string_value == "katib"
    assert params["experiment"].default_value.string_value == "experiments/random.yaml"
    # on a cluster the data is the volume's, not the image's sample; the trials run the compiled image
    assert params["data_dir"].default_value.string_value == "/data"
    assert params["data_pvc"].default_value.string_value == "digit-recognizer-data"
    assert params["trial_image"].default_value.string_value == IMAGE
    # on a cluster the export step adds a version where deploy/kserve/inferenceservice.yaml's storageUri points
    assert params["export_dir"].default_value.string_value == "/data/models/digits"
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
        waits = sum(policy.backoff_duration.seconds * policy.backoff_factor ** i
                    for i in range(policy.max_retry_count))
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
    assert spec.components["comp-retrain"].output_definitions.artifacts["model"].artifact_type.schema_title \
        == "system.Model"


def test_compile_command_names_the_image(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "compile", "-o", str(out), "--image", "me/digits:dev"])
    assert exit_info.value.code == 0
    assert "image: me/digits:dev" in out.read_text()


def test_pipeline_arguments_cover_every_parameter(spec):
    args = pipeline_arguments("/data", "experiments/tpe.yaml", "katib", Budget(max_trial_count=9), "team-a", 60,
                              data_pvc="my-data", trial_image="me/digits:1")
    assert set(args) == set(spec.root.input_definitions.parameters)
    assert args["max_trial_count"] == 9 and args["namespace"] == "team-a" and args["backend"] == "katib"
    with pytest.raises(UserError, match="backend: 'kubeflow' is not one of katib, optuna"):
        pipeline_arguments("/data", "x.yaml", "kubeflow", Budget())


def test_local_budget_is_tiny():
    tiny = local_budget(LOCAL_BUDGET, load(LOCAL_EXPERIMENT))
    assert tiny.max_trial_count <= 4 and tiny.trial_epochs == 1 and tiny.trial_max_rows <= 500


@pytest.mark.parametrize("name", ["hyperband", "asha"])
def test_the_local_default_epochs_leave_the_resource_to_hyperband_and_asha(name, capsys):
    resolved = local_budget(LOCAL_BUDGET, load(REPO / "experiments" / f"{name}.yaml"))
    assert resolved.trial_epochs == 0 and resolved.trial_max_rows == LOCAL_BUDGET.trial_max_rows
    assert f"{name} gives each trial its epochs: the local default --trial-epochs 1 is not applied" in \
        capsys.readouterr().out
    assert local_budget(Budget(trial_epochs=2), load(REPO / "experiments" / f"{name}.yaml")).trial_epochs == 2


RESOURCE_REFUSAL = ("{path}: spec.algorithm.algorithmSettings.resource_name: trial_epochs (--trial-epochs) would "
                    "append --epochs=2 to every trial, overriding --epochs, which {alg} sets per rung from "
                    "parameter 'epochs': every rung would train the same; leave it at 0 for {alg}")


@pytest.mark.parametrize("name", ["hyperband", "asha"])
@pytest.mark.parametrize("where", ["--local", "--host"])
def test_trial_epochs_that_would_override_the_resource_are_refused_before_a_run(tmp_path, capsys, name, where):
    path = f"experiments/{name}.yaml"
    argv = ["pipeline", "run", "--experiment", path, "--trial-epochs", "2", "--out", str(tmp_path / "out")]
    argv += ["--local"] if where == "--local" else ["--host", "http://127.0.0.1:9"]  # nothing is contacted
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "katib-digits: error: " + RESOURCE_REFUSAL.format(path=path, alg=name)
    assert not (tmp_path / "out").exists()


def test_the_tune_step_refuses_it_too_and_takes_other_budget_flags(tmp_path):
    hyperband = load(REPO / "experiments" / "hyperband.yaml")
    with pytest.raises(UserError) as err:
        steps.tune(hyperband, "optuna", tmp_path, trial_epochs=2)
    assert str(err.value) == RESOURCE_REFUSAL.format(path=hyperband.source, alg="hyperband")
    assert not list(tmp_path.iterdir())  # refused before any trial
    steps.refuse_resource_overrides(hyperband, trial_max_rows=300)  # rows are not hyperband's resource
    steps.refuse_resource_overrides(load(REPO / "experiments" / "tpe.yaml"), 300, 2)  # tpe has no resource


@pytest.mark.parametrize("argv, message", [
    (["pipeline", "run"], "pass exactly one of --local or --host URL"),
    (["pipeline", "run", "--local", "--host", "http://kfp"], "pass exactly one of --local or --host URL"),
    (["pipeline", "run", "--local", "--experiment", "nope.yaml"], "nope.yaml: file not found"),
])
def test_run_command_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("katib-digits: error: ") and err.endswith(message) and "\n" not in err


def test_tee_keeps_the_last_step_error(capsys):
    import sys

    tee = _Tee(sys.stdout)
    tee.write("    some log\n    katib-digits: error: data/x/train.csv: line 1 (header): bad\n    more")
    tee.write(" log\n")
    assert tee.error == "data/x/train.csv: line 1 (header): bad"
    assert "more log" in capsys.readouterr().out


def test_failed_step_is_read_from_kfp_local_message():
    message = "Pipeline \x1b[95m'katib-digits'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. " \
              "Inner task failed: \x1b[96m'prepare'\x1b[0m."
    assert _failed_step(message) == "prepare"


# --- whole local runs (kfp.local, each step a subprocess) --------------------------------------


def bad_layout_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "test.csv.gz", data / "test.csv.gz")
    with gzip.open(SAMPLE / "test.csv.gz", "rt") as src, open(data / "train.csv", "w") as dst:
        dst.writelines(line for _, line in zip(range(5), src))  # a test file where train.csv should be
    return data


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize("case, step, message", [
    ("missing", "prepare", r"data folder not found"),
    ("bad-layout", "prepare", r"train.csv: line 1 \(header\): .*found a test-file header without 'label'"),
])
def test_bad_data_fails_at_prepare_with_one_line(tmp_path, capsys, case, step, message):
    data = tmp_path / "nowhere" if case == "missing" else bad_layout_data(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "run", "--local", "--data", str(data), "--experiment", str(LOCAL_EXPERIMENT),
                  "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"katib-digits: error: pipeline step {step}: ")
    assert re.search(message, err)


@pytest.mark.process
@pytest.mark.slow
def test_invalid_experiment_fails_before_any_step_with_the_linters_message(tmp_path, capsys):
    exp = yaml.safe_load(LOCAL_EXPERIMENT.read_text())
    exp["spec"]["objective"]["type"] = "maximise"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(exp))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "run", "--local", "--data", str(SAMPLE), "--experiment", str(bad),
                  "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"katib-digits: error: {bad}: spec.objective.type: error: ")
    assert not (tmp_path / "out").exists()  # refused before kfp.local started a step


@pytest.mark.process
@pytest.mark.slow
def test_local_run_writes_submission_and_summary(tmp_path):
    out = tmp_path / "out"
    budget = Budget(max_trial_count=2, parallel_trial_count=2, trial_max_rows=200, trial_epochs=1,
                    retrain_epochs=1)
    summary = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget)
    check_submission(out / "submission.csv", 500, SAMPLE / "sample_submission.csv")
    with open(out / "submission.csv") as fh:
        assert len(list(csv.reader(fh))) == 501
    saved = json.loads((out / "summary.json").read_text())
    assert saved["submitted"] is True and saved["best_trial"] == summary["best_trial"]
    assert saved["objective_metric"] and isinstance(saved["objective"], float)
    assert saved["assignments"] and saved["retrain"]["epochs"] == 1
    final = json.loads((out / "experiment.json").read_text())
    assert final["status"]["currentOptimalTrial"]["bestTrialName"] == summary["best_trial"]
    assert final["spec"]["maxTrialCount"] == 2 and final["status"]["trials"] == 2  # the budget override
    # the export step's SavedModel, version 1 of a model folder a server watches, answers what predict wrote
    assert saved["saved_model"] == str(out / "models" / "digits")
    from pipeline.serving.server import Predictor
    from trial.data import load_test

    served = Predictor(out / "models" / "digits", "digits")
    assert served.saved_model == out / "models" / "digits" / "1"
    with open(out / "submission.csv") as fh:
        labels = [int(row["Label"]) for row in csv.DictReader(fh)][:32]
    probabilities = served.predict(load_test(SAMPLE / "test.csv.gz")[:32].astype("float32"))
    assert [max(range(10), key=p.__getitem__) for p in probabilities] == labels


@pytest.mark.process
@pytest.mark.slow
def test_hyperband_pipeline_runs_with_the_default_local_budget(tmp_path, capsys):
    """`pipeline run --local --experiment experiments/hyperband.yaml`: the local budget (3 trials, 1 at a
    time) meets hyperband's parallelism rule through the one budget rule (pipeline.katib.budget)."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pipeline", "run", "--local", "--experiment", "experiments/hyperband.yaml", "--out", str(out)])
    assert exit_info.value.code == 0, capsys.readouterr()
    check_submission(out / "submission.csv", 500, SAMPLE / "sample_submission.csv")
    final = json.loads((out / "experiment.json").read_text())
    assert final["spec"]["algorithm"]["algorithmName"] == "hyperband"
    assert (final["spec"]["maxTrialCount"], final["spec"]["parallelTrialCount"]) == (3, 9)
    assert final["status"]["trials"] == 3 and final["status"]["trialsSucceeded"] == 3
    said = capsys.readouterr().out
    assert "parallelTrialCount 1 raised to 9" in said and "Katib would reject this budget" in said


@pytest.mark.process
@pytest.mark.slow
def test_gate_closed_means_no_submission(tmp_path):
    out = tmp_path / "out"
    budget = Budget(max_trial_count=1, parallel_trial_count=1, trial_max_rows=60, trial_epochs=1,
                    retrain_epochs=1, threshold=1.01)  # accuracy can never reach it
    summary = run_local(SAMPLE, LOCAL_EXPERIMENT, out, budget)
    assert summary["submitted"] is False and summary["reached"] is False
    assert not (out / "submission.csv").exists()


# --- the steps' library functions (pipeline.workflow.steps) ---------------------------------------------


def random_experiment():
    if not LOCAL_EXPERIMENT.exists():
        pytest.skip(f"{LOCAL_EXPERIMENT} not written yet")
    return yaml.safe_load(LOCAL_EXPERIMENT.read_text())


def test_prepare_data_validates_and_copies(tmp_path):
    info = steps.prepare_data(SAMPLE, tmp_path / "train", tmp_path / "test")
    assert info["train_rows"] == 2000 and info["test_rows"] == 500
    assert info["files"] == {"train": "train.csv.gz", "test": "test.csv.gz",
                             "sample_submission": "sample_submission.csv"}
    assert (tmp_path / "test" / "sample_submission.csv").is_file()


def test_append_trial_args_goes_to_the_primary_container():
    exp = random_experiment()
    args = steps.trial_budget_args(trial_max_rows=100, trial_epochs=2)
    assert args == ["--max-rows=100", "--epochs=2"]
    command = steps.append_trial_args(Experiment(exp), args).primary_container()["command"]
    assert command[:3] == ["python", "-m", "trial"] and command[-2:] == args
    assert steps.trial_budget_args() == []


def test_read_experiment_from_path_text_and_project_root(monkeypatch, tmp_path):
    random_experiment()
    exp = steps.read_experiment(str(LOCAL_EXPERIMENT))
    assert exp.source == str(LOCAL_EXPERIMENT) and exp.name == "digits-random"
    monkeypatch.chdir(tmp_path)  # a relative path falls back to the project root
    assert steps.read_experiment("experiments/random.yaml").raw == exp.raw
    from_text = steps.read_experiment(LOCAL_EXPERIMENT.read_text())
    assert (from_text.raw, from_text.source) == (exp.raw, "<experiment text>")


def test_read_experiment_reports_the_linters_first_error(tmp_path):
    exp = random_experiment()
    exp["spec"]["objective"]["type"] = "maximise"
    exp["spec"]["maxTrialCount"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(exp))
    with pytest.raises(UserError, match=r"bad.yaml: spec\.\S+: error: .*\(and \d+ more: katib-digits lint "):
        steps.read_experiment(str(bad))


def test_tune_rejects_an_unknown_backend(tmp_path):
    with pytest.raises(UserError, match="backend: 'slurm' is not one of katib, optuna"):
        steps.tune({"spec": {}}, "slurm", tmp_path)


def test_require_succeeded():
    failed = {"metadata": {"name": "e"}, "status": {"conditions": [
        {"type": "Running", "status": "False"},
        {"type": "Failed", "status": "True", "reason": "ExperimentMaxFailedTrialsReached", "message": "3 failed"}]}}
    with pytest.raises(UserError, match=r"Experiment e Failed \(ExperimentMaxFailedTrialsReached\): 3 failed; logs"):
        steps.require_succeeded(failed, "logs")
    steps.require_succeeded({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}})


@pytest.mark.parametrize("threshold, reached", [(0.0, True), (0.9, True), (0.95, False)])
def test_summarize_tuning(threshold, reached):
    final = {"kind": "Experiment", "spec": {"objective": {"type": "maximize", "objectiveMetricName": "val_accuracy"}},
             "status": {"currentOptimalTrial": {"bestTrialName": "e-abc", "parameterAssignments": [
                 {"name": "dropout", "value": "0.2"}], "observation": {"metrics": [
                     {"name": "val_accuracy", "min": "0.5", "max": "0.9", "latest": "0.8"}]}}}}
    summary = steps.summarize_tuning(final, threshold)
    assert summary["objective"] == pytest.approx(0.9) and summary["reached"] is reached
    assert summary["assignments"] == {"dropout": "0.2"} and summary["best_trial"] == "e-abc"


def test_the_local_run_has_no_retries(tmp_path):
    """kfp.local honours retry policies: a step failing on bad input would run three times, 90 s of pauses."""
    from kfp import compiler

    from pipeline.workflow.kfp_pipeline import build_pipeline

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_pipeline(IMAGE, retries=False), str(path))
    local = json_format.ParseDict(next(yaml.safe_load_all(path.read_text())), pipeline_spec_pb2.PipelineSpec())
    steps = local.components["comp-exit-handler-1"].dag.tasks
    assert all(not steps[name].HasField("retry_policy") for name in ("prepare", "tune"))
