"""pipeline.lint: Katib's admission rules offline. One broken variant per rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli.lint import lint_command
from pipeline.errors import UserError
from pipeline.katib.algorithms import hyperband_min_parallel
from pipeline.katib.experiment import dump_yaml, load_experiment
from pipeline.lint import lint_experiment, load
from pipeline.lint.fields import CONFIG_FILE, SWAGGER_FILE, load_schema_file
from tests.conftest import REPO, katib_digits

EXPERIMENTS = REPO / "experiments"
BASE = load_experiment(EXPERIMENTS / "random.yaml")


def variant(change: Callable[[dict[str, Any]], None], base: str = "random") -> dict[str, Any]:
    exp = copy.deepcopy(BASE if base == "random" else load_experiment(EXPERIMENTS / f"{base}.yaml"))
    change(exp)
    return exp


def spec(exp):
    return exp["spec"]


def param(exp, name):
    return next(p for p in exp["spec"]["parameters"] if p["name"] == name)


def container(exp):
    return exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def settings(exp, *pairs):
    exp["spec"]["algorithm"]["algorithmSettings"] = [{"name": n, "value": v} for n, v in pairs]


# (id, base file, change, path the problem names, words in its message, severity)
BROKEN = [
    # metadata and counts (validator.go)
    ("name-upper", "random", lambda e: e["metadata"].update(name="Digits"), "metadata.name", "lower-case", "error"),
    ("name-long", "random", lambda e: e["metadata"].update(name="d" * 41), "metadata.name", "40", "error"),
    ("name-missing", "random", lambda e: e["metadata"].pop("name"), "metadata.name", "required", "error"),
    (
        "name-underscore",
        "random",
        lambda e: e["metadata"].update(name="digits_x"),
        "metadata.name",
        "not a valid Kubernetes name",
        "error",
    ),
    ("name-dot", "random", lambda e: e["metadata"].update(name="digits.x"), "metadata.name", "Service", "warning"),
    (
        "max-trials-zero",
        "random",
        lambda e: spec(e).update(maxTrialCount=0),
        "spec.maxTrialCount",
        "greater than 0",
        "error",
    ),
    (
        "parallel-zero",
        "random",
        lambda e: spec(e).update(parallelTrialCount=0),
        "spec.parallelTrialCount",
        "greater than 0",
        "error",
    ),
    (
        "failed-negative",
        "random",
        lambda e: spec(e).update(maxFailedTrialCount=-1),
        "spec.maxFailedTrialCount",
        "less than 0",
        "error",
    ),
    (
        "failed-over-max",
        "random",
        lambda e: spec(e).update(maxFailedTrialCount=30),
        "spec.maxFailedTrialCount",
        "less than or equal to spec.maxTrialCount",
        "error",
    ),
    (
        "parallel-over-max",
        "random",
        lambda e: spec(e).update(parallelTrialCount=30),
        "spec.parallelTrialCount",
        "less than or equal to spec.maxTrialCount",
        "error",
    ),
    (
        "max-trials-missing",
        "random",
        lambda e: spec(e).pop("maxTrialCount"),
        "spec.maxTrialCount",
        "never does",
        "warning",
    ),
    # objective
    ("objective-missing", "random", lambda e: spec(e).pop("objective"), "spec.objective", "required", "error"),
    (
        "objective-type",
        "random",
        lambda e: spec(e)["objective"].update(type="max"),
        "spec.objective.type",
        "minimize or maximize",
        "error",
    ),
    (
        "objective-name",
        "random",
        lambda e: spec(e)["objective"].pop("objectiveMetricName"),
        "spec.objective.objectiveMetricName",
        "required",
        "error",
    ),
    (
        "objective-in-additional",
        "random",
        lambda e: spec(e)["objective"]["additionalMetricNames"].append("val_accuracy"),
        "spec.objective.additionalMetricNames",
        "should not contain",
        "error",
    ),
    (
        "strategy-value",
        "random",
        lambda e: spec(e)["objective"].update(metricStrategies=[{"name": "loss", "value": "mean"}]),
        "spec.objective.metricStrategies[0].value",
        "min, max, latest",
        "warning",
    ),
    (
        "metric-not-printed",
        "random",
        lambda e: spec(e)["objective"].update(objectiveMetricName="val_acc"),
        "spec.objective",
        "never printed by `python -m trial`",
        "warning",
    ),
    (
        "metric-unmatchable",
        "random",
        lambda e: spec(e)["objective"].update(objectiveMetricName="val/accuracy"),
        "spec.objective",
        "default filter",
        "warning",
    ),
    # algorithm, early stopping, resume policy
    ("algorithm-missing", "random", lambda e: spec(e).pop("algorithm"), "spec.algorithm", "required", "error"),
    (
        "algorithm-disabled",
        "random",
        lambda e: spec(e)["algorithm"].update(algorithmName="gp"),
        "spec.algorithm.algorithmName",
        "not enabled",
        "error",
    ),
    (
        "early-stopping-disabled",
        "random",
        lambda e: spec(e).update(earlyStopping={"algorithmName": "hyperstop"}),
        "spec.earlyStopping.algorithmName",
        "not enabled",
        "error",
    ),
    (
        "resume-policy",
        "random",
        lambda e: spec(e).update(resumePolicy="Always"),
        "spec.resumePolicy",
        "invalid ResumePolicyType",
        "error",
    ),
    (
        "medianstop-unknown",
        "random-medianstop",
        lambda e: spec(e)["earlyStopping"]["algorithmSettings"].append({"name": "min_steps", "value": "2"}),
        "spec.earlyStopping.algorithmSettings[2].name",
        "unknown setting 'min_steps'",
        "error",
    ),
    (
        "medianstop-start-step",
        "random-medianstop",
        lambda e: spec(e)["earlyStopping"]["algorithmSettings"][1].update(value="0"),
        "spec.earlyStopping.algorithmSettings[1].value",
        "start_step",
        "error",
    ),
    # parameters
    (
        "no-parameters",
        "random",
        lambda e: spec(e).pop("parameters"),
        "spec.parameters",
        "spec.parameters or spec.nasConfig",
        "error",
    ),
    (
        "parameter-type",
        "random",
        lambda e: param(e, "dropout").update(parameterType="float"),
        "spec.parameters[6].parameterType",
        "not supported",
        "error",
    ),
    (
        "distribution",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].update(distribution="gaussian"),
        "spec.parameters[6].feasibleSpace.distribution",
        "not supported",
        "error",
    ),
    (
        "double-list",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].update(list=["0.1"]),
        "spec.parameters[6].feasibleSpace.list",
        "not supported for parameterType double",
        "error",
    ),
    (
        "double-no-max",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].pop("max"),
        "spec.parameters[6].feasibleSpace.max",
        "must be specified",
        "error",
    ),
    (
        "categorical-min",
        "random",
        lambda e: param(e, "optimizer")["feasibleSpace"].update(min="1"),
        "spec.parameters[3].feasibleSpace",
        ".max, .min and .step is not supported",
        "error",
    ),
    (
        "min-over-max",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].update(min="0.6"),
        "spec.parameters[6].feasibleSpace.min",
        "greater than max",
        "warning",
    ),
    (
        "empty-categorical",
        "random",
        lambda e: param(e, "optimizer")["feasibleSpace"].update(list=[]),
        "spec.parameters[3].feasibleSpace.list",
        "at least one value",
        "warning",
    ),
    (
        "int-not-integer",
        "random",
        lambda e: param(e, "dense-units")["feasibleSpace"].update(max="512.5"),
        "spec.parameters[5].feasibleSpace.max",
        "not an integer",
        "error",
    ),
    (
        "step-zero",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].update(step="0"),
        "spec.parameters[6].feasibleSpace.step",
        "positive",
        "error",
    ),
    (
        "unused-parameter",
        "random",
        lambda e: spec(e)["parameters"].append(
            {"name": "momentum", "parameterType": "double", "feasibleSpace": {"min": "0.5", "max": "0.9"}}
        ),
        "spec.parameters[9].name",
        "no trialParameter references 'momentum'",
        "error",
    ),
    # field types (swagger.json) and unknown fields
    (
        "min-unquoted",
        "random",
        lambda e: param(e, "dropout")["feasibleSpace"].update(min=0.1),
        "spec.parameters[6].feasibleSpace.min",
        "expected a string, found number 0.1 (quote it)",
        "error",
    ),
    (
        "count-as-string",
        "random",
        lambda e: spec(e).update(maxTrialCount="24"),
        "spec.maxTrialCount",
        "expected an integer",
        "error",
    ),
    (
        "goal-as-string",
        "random",
        lambda e: spec(e)["objective"].update(goal="0.99"),
        "spec.objective.goal",
        "expected a number",
        "error",
    ),
    (
        "setting-unquoted",
        "multivariate-tpe",
        lambda e: settings(e, ("n_startup_trials", 6)),
        "spec.algorithm.algorithmSettings[0].value",
        "expected a string",
        "error",
    ),
    (
        "unknown-field",
        "random",
        lambda e: spec(e).update(maxTrialCounts=5),
        "spec.maxTrialCounts",
        "did you mean 'maxTrialCount'",
        "warning",
    ),
    # trial template
    ("template-missing", "random", lambda e: spec(e).pop("trialTemplate"), "spec.trialTemplate", "required", "error"),
    (
        "primary-container-missing",
        "random",
        lambda e: spec(e)["trialTemplate"].pop("primaryContainerName"),
        "spec.trialTemplate.primaryContainerName",
        "required",
        "error",
    ),
    (
        "primary-container-unknown",
        "random",
        lambda e: spec(e)["trialTemplate"].update(primaryContainerName="trainer"),
        "spec.trialTemplate.primaryContainerName",
        "no container named 'trainer'",
        "warning",
    ),
    (
        "trial-parameters-missing",
        "random",
        lambda e: spec(e)["trialTemplate"].pop("trialParameters"),
        "spec.trialTemplate.trialParameters",
        "required",
        "error",
    ),
    (
        "spec-and-configmap",
        "random",
        lambda e: spec(e)["trialTemplate"].update(
            configMap={"configMapName": "a", "configMapNamespace": "b", "templatePath": "c"}
        ),
        "spec.trialTemplate",
        "only one of",
        "error",
    ),
    (
        "no-conditions",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialSpec"].update(apiVersion="example.com/v1", kind="Widget"),
        "spec.trialTemplate",
        "successCondition and failureCondition",
        "error",
    ),
    (
        "trial-parameter-brace",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialParameters"][0].update(name="learning{Rate}"),
        "spec.trialTemplate.trialParameters[0]",
        "must not contain",
        "error",
    ),
    (
        "trial-parameter-duplicate",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialParameters"][1].update(name="learningRate"),
        "spec.trialTemplate.trialParameters[1].name",
        "can't be duplicated",
        "error",
    ),
    (
        "trial-parameter-bad-reference",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialParameters"][0].update(reference="lr"),
        "spec.trialTemplate.trialParameters[0].reference",
        "does not exist in spec.parameters",
        "error",
    ),
    (
        "trial-parameter-unused",
        "random",
        lambda e: container(e)["command"].remove("--dropout=${trialParameters.dropout}"),
        "spec.trialTemplate.trialParameters[6].name",
        "not used in spec.trialTemplate.trialSpec",
        "error",
    ),
    (
        "placeholder-undefined",
        "random",
        lambda e: container(e)["command"].append("--seed=${trialParameters.seed}"),
        "spec.trialTemplate.trialSpec",
        "${trialParameters.seed}: not defined",
        "error",
    ),
    (
        "template-metadata-name",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialSpec"].update(metadata={"name": "job"}),
        "spec.trialTemplate.trialSpec.metadata",
        "must be omitted",
        "error",
    ),
    (
        "job-unknown-field",
        "random",
        lambda e: container(e).update(comand=["python"]),
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].comand",
        "did you mean 'command'",
        "error",
    ),
    (
        "job-wrong-type",
        "random",
        lambda e: spec(e)["trialTemplate"]["trialSpec"]["spec"].update(backoffLimit="0"),
        "spec.trialTemplate.trialSpec.spec.backoffLimit",
        "expected integer",
        "error",
    ),
    (
        "trial-rejects-args",
        "random",
        lambda e: container(e)["command"].append("--learning-rates=1"),
        "spec.trialTemplate.trialSpec",
        "the trial rejects its arguments",
        "warning",
    ),
    # metrics collector
    (
        "collector-kind",
        "random",
        lambda e: spec(e)["metricsCollectorSpec"]["collector"].update(kind="Stdout"),
        "spec.metricsCollectorSpec.collector.kind",
        "invalid metrics collector kind",
        "error",
    ),
    (
        "collector-not-enabled",
        "random",
        lambda e: spec(e)["metricsCollectorSpec"]["collector"].update(kind="PrometheusMetric"),
        "spec.metricsCollectorSpec.collector.kind",
        "not enabled",
        "error",
    ),
    (
        "file-relative-path",
        "random",
        lambda e: spec(e).update(
            metricsCollectorSpec={
                "collector": {"kind": "File"},
                "source": {"fileSystemPath": {"kind": "File", "path": "metrics.log"}},
            }
        ),
        "spec.metricsCollectorSpec.source.fileSystemPath.path",
        "absolute path",
        "error",
    ),
    (
        "json-with-filter",
        "random",
        lambda e: spec(e).update(
            metricsCollectorSpec={
                "collector": {"kind": "File"},
                "source": {"fileSystemPath": {"format": "JSON"}, "filter": {"metricsFormat": ["(\\w+)=(\\d+)"]}},
            }
        ),
        "spec.metricsCollectorSpec.source.filter",
        "must be nil",
        "error",
    ),
    (
        "filter-one-group",
        "random",
        lambda e: spec(e)["metricsCollectorSpec"].update(source={"filter": {"metricsFormat": ["([a-z]+)=.*"]}}),
        "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
        "two top subexpressions",
        "error",
    ),
    (
        "tfevent-format",
        "random",
        lambda e: spec(e).update(
            metricsCollectorSpec={
                "collector": {"kind": "TensorFlowEvent"},
                "source": {"fileSystemPath": {"format": "TEXT"}},
            }
        ),
        "spec.metricsCollectorSpec.source.fileSystemPath.format",
        "must be empty",
        "error",
    ),
    # each algorithm's own settings
    (
        "random-unknown-setting",
        "random",
        lambda e: settings(e, ("seed", "1")),
        "spec.algorithm.algorithmSettings[0].name",
        "unknown setting 'seed' for algorithm random",
        "error",
    ),
    (
        "tpe-gamma",
        "tpe",
        lambda e: settings(e, ("gamma", "1.5")),
        "spec.algorithm.algorithmSettings[0].value",
        "gamma should be in the range of (0, 1)",
        "error",
    ),
    (
        "tpe-candidates",
        "tpe",
        lambda e: settings(e, ("n_EI_candidates", "0")),
        "spec.algorithm.algorithmSettings[0].value",
        "n_EI_candidates should be >= 1",
        "error",
    ),
    (
        "hyperopt-log-min",
        "random",
        lambda e: param(e, "learning-rate")["feasibleSpace"].update(min="0"),
        "spec.parameters[0].feasibleSpace.min",
        "log(min)",
        "error",
    ),
    (
        "mtpe-unknown-setting",
        "multivariate-tpe",
        lambda e: settings(e, ("n_EI_candidates", "24")),
        "spec.algorithm.algorithmSettings[0].name",
        "unknown setting 'n_EI_candidates'",
        "error",
    ),
    (
        "optuna-normal",
        "multivariate-tpe",
        lambda e: param(e, "dropout")["feasibleSpace"].update(distribution="normal"),
        "spec.parameters[6].feasibleSpace.distribution",
        "supports only uniform and logUniform",
        "error",
    ),
    (
        "grid-double-no-step",
        "grid",
        lambda e: param(e, "dropout")["feasibleSpace"].pop("step"),
        "spec.parameters",
        "every double needs a step",
        "error",
    ),
    (
        "grid-too-small",
        "grid",
        lambda e: spec(e).update(maxTrialCount=25),
        "spec.maxTrialCount",
        "Max Trial Count: 25 > all possible search combinations: 24",
        "error",
    ),
    (
        "bayes-setting-value",
        "bayesianoptimization",
        lambda e: settings(e, ("acq_func", "UCB")),
        "spec.algorithm.algorithmSettings[0].value",
        "acq_func 'UCB' is not supported",
        "error",
    ),
    (
        "bayes-double-zero",
        "bayesianoptimization",
        lambda e: param(e, "dropout")["feasibleSpace"].update(min="0"),
        "spec.parameters[6].feasibleSpace.min",
        "log-uniformly",
        "error",
    ),
    (
        "cmaes-one-dimension",
        "cmaes",
        lambda e: spec(e).update(
            parameters=[p for p in spec(e)["parameters"] if p["name"] in ("optimizer", "dropout", "batch-size")]
        ),
        "spec.parameters",
        "two or more dimensional",
        "error",
    ),
    (
        "cmaes-restart",
        "cmaes",
        lambda e: settings(e, ("restart_strategy", "lipop")),
        "spec.algorithm.algorithmSettings[0].value",
        "invalid restart_strategy",
        "error",
    ),
    (
        "goptuna-ignored-setting",
        "sobol",
        lambda e: settings(e, ("random_state", "1")),
        "spec.algorithm.algorithmSettings[0].name",
        "ignores it",
        "warning",
    ),
    (
        "hyperband-missing-r_l",
        "hyperband",
        lambda e: settings(e, ("resource_name", "epochs")),
        "spec.algorithm.algorithmSettings",
        "r_l and resource_name must be set",
        "error",
    ),
    (
        "hyperband-parallel",
        "hyperband",
        lambda e: spec(e).update(parallelTrialCount=3),
        "spec.parallelTrialCount",
        "needs parallelTrialCount >= 9",
        "error",
    ),
    (
        "hyperband-resource",
        "hyperband",
        lambda e: settings(e, ("resource_name", "epoch"), ("r_l", "9")),
        "spec.algorithm.algorithmSettings[0].value",
        "resource_name 'epoch' must be one of spec.parameters",
        "error",
    ),
]


@pytest.mark.parametrize(
    "base, change, path, words, severity", [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_broken_variant_is_reported(base, change, path, words, severity):
    problems = lint_experiment(variant(change, base), "x.yaml")
    hits = [p for p in problems if p.path == path and words in p.message]
    assert hits, f"no problem at {path!r} containing {words!r}; got:\n" + "\n".join(map(str, problems))
    assert hits[0].severity == severity
    if severity == "warning":
        assert "stricter than Katib" in hits[0].message


def test_case_ids_are_unique():
    ids = [case[0] for case in BROKEN]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", ["max-trials-zero", "job-unknown-field", "grid-too-small"])
def test_broken_variant_exits_1_naming_the_field(tmp_path, case):
    _, base, change, path, words, _ = next(c for c in BROKEN if c[0] == case)
    f = tmp_path / "broken.yaml"
    f.write_text(dump_yaml(variant(change, base)))
    result = CliRunner().invoke(lint_command, [str(f)])
    assert result.exit_code == 1
    assert f"{f}: {path}: error: " in result.output and words in result.output


def test_a_file_refused_while_reading_is_counted_in_the_summary(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata:\n  name: x\n"
        "spec:\n  parameters:\n    - name: y\n"
    )
    result = CliRunner().invoke(lint_command, [str(f), str(EXPERIMENTS / "random.yaml")])
    assert result.exit_code == 2
    assert "lint: 2 file(s), 1 unreadable, 0 error(s), 0 warning(s): invalid" in result.output


def test_shipped_experiments_exit_0():
    files = sorted(str(p) for p in EXPERIMENTS.glob("*.yaml"))
    result = CliRunner().invoke(lint_command, ["--strict", *files])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output.replace("0 error(s)", "")


def test_json_format():
    result = CliRunner().invoke(lint_command, ["--format", "json", str(EXPERIMENTS / "cmaes.yaml")])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["errors"] == 0
    (report,) = data["files"]
    assert report["ok"] and {p["severity"] for p in report["problems"]} == {"note"}


def test_show_defaults_prints_the_defaulted_spec():
    result = CliRunner().invoke(lint_command, ["--show-defaults", str(EXPERIMENTS / "tpe.yaml")])
    assert result.exit_code == 0
    spec = yaml.safe_load(result.stdout.split("---\n", 1)[1])["spec"]
    assert spec["trialTemplate"]["successCondition"].startswith("status.conditions")
    assert {"name": "loss", "value": "max"} in spec["objective"]["metricStrategies"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("spec: [", "not valid YAML"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "kind: expected 'Experiment'"),
        (
            (EXPERIMENTS / "random.yaml").read_text() + "---\n" + (EXPERIMENTS / "tpe.yaml").read_text(),
            "2 YAML documents",
        ),
        (None, "file not found"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, content, message):
    f = tmp_path / "in.yaml"
    if content is not None:
        f.write_text(content)
    run = katib_digits("lint", str(f))
    assert run.returncode == 2
    assert f"katib-digits: error: {f}" in run.stderr and message in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_mount_option_is_a_user_error():
    result = CliRunner().invoke(lint_command, ["--run", "--mount", "data", str(EXPERIMENTS / "random.yaml")])
    assert isinstance(result.exception, UserError) and "--mount" in str(result.exception)


def test_load_validates(tmp_path):
    spec = load(EXPERIMENTS / "random.yaml").spec
    assert spec["trialTemplate"]["failureCondition"]  # defaulted
    f = tmp_path / "bad.yaml"
    f.write_text(dump_yaml(variant(lambda e: spec_update(e, maxTrialCount=0))))
    with pytest.raises(UserError, match=r"bad.yaml: spec.maxTrialCount: error: 0: must be greater than 0"):
        load(f)


def spec_update(exp, **fields):
    exp["spec"].update(fields)


def test_load_strict_fails_on_warnings(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text(dump_yaml(variant(lambda e: e["spec"].update(maxTrialCounts=3))))
    assert load(f).max_trial_count == 24
    with pytest.raises(UserError, match="maxTrialCounts"):
        load(f, strict=True)


@pytest.mark.parametrize("r_l, eta, needed", [(9, 3, 9), (2, 2, 2), (8, 2, 8), (1000, 10, 100), (3, 5, 1)])
def test_hyperband_parallel_bound(r_l, eta, needed):
    # int(log(1000)/log(10)) is 2 in floating point, as in Katib's Python service.
    assert hyperband_min_parallel(r_l, eta) == needed


# --- Katib's own files ---------------------------------------------------------------------------------


def test_katib_examples_lint_without_errors(shared_katib):
    files = sorted((shared_katib / "examples").glob("*.yaml"))
    assert len(files) == 22
    for f in files:
        errors = [p for p in lint_experiment(load_experiment(f), f.name) if p.severity == "error"]
        if f.name == "hp-tuning--simple-pbt.yaml":
            # Katib's own example sets maxFailedTrialCount 3 > maxTrialCount 2, which validator.go
            # rejects; Katib's e2e script rewrites both counts before creating it. Reported, not hidden.
            assert [(p.path, p.message) for p in errors] == [
                ("spec.maxFailedTrialCount", "3: should be less than or equal to spec.maxTrialCount (2)")
            ]
            continue
        assert not errors, f"{f.name}: {errors}"


def test_shipped_swagger_subset_matches_katib(shared_katib):
    shipped = load_schema_file(SWAGGER_FILE)["definitions"]
    upstream = json.loads((shared_katib / "swagger.json").read_text())["definitions"]
    assert "v1beta1.ExperimentSpec" in shipped
    for name, definition in shipped.items():
        assert definition == upstream[name], name


def test_shipped_katib_config_matches_katib(shared_katib):
    shipped = load_schema_file(CONFIG_FILE)
    upstream = yaml.safe_load((shared_katib / "katib-config.yaml").read_text())
    assert list(shipped["suggestions"]) == [s["algorithmName"] for s in upstream["runtime"]["suggestions"]]
    assert list(shipped["earlyStoppings"]) == [s["algorithmName"] for s in upstream["runtime"]["earlyStoppings"]]
    assert shipped["metricsCollectors"] == [c["kind"] for c in upstream["runtime"]["metricsCollectors"]]
    assert shipped["trialResources"] == upstream["init"]["controller"]["trialResources"]


def test_schema_files_ship_with_attribution():
    for name in (SWAGGER_FILE, CONFIG_FILE):
        text = json.dumps(load_schema_file(name)["$comment"])
        assert "kubeflow/katib" in text and "Apache" in text
    assert (REPO / "pipeline" / "katib" / "schema" / "README.md").exists()
    assert Path(REPO / "pipeline" / "katib" / "schema" / SWAGGER_FILE).stat().st_size < 64_000


@pytest.mark.process
@pytest.mark.slow
def test_run_flag_runs_one_tiny_trial_after_a_clean_lint():
    result = CliRunner().invoke(
        lint_command,
        [
            "--run",
            "--mount",
            f"/data={REPO / 'data' / 'sample'}",
            "--trial-arg=--max-rows=300",
            "--trial-arg=--epochs=1",
            str(EXPERIMENTS / "random.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "the objective metric was collected" in result.output


@pytest.mark.parametrize(
    "settings, path, words",
    [
        (
            {"n_population": "5", "truncation_threshold": "0.2"},
            "spec.algorithm.algorithmSettings",
            "missing: suggestion_trial_dir",
        ),
        (
            {"suggestion_trial_dir": "/var/log/katib/checkpoints/", "n_population": "4", "truncation_threshold": "0.2"},
            "spec.algorithm.algorithmSettings[1].value",
            "should be >= 5",
        ),
        (
            {"suggestion_trial_dir": "/d", "n_population": "5", "truncation_threshold": "1.5"},
            "spec.algorithm.algorithmSettings[2].value",
            "between 0 and 1",
        ),
        (
            {
                "suggestion_trial_dir": "/d",
                "n_population": "5",
                "truncation_threshold": "0.2",
                "resample_probability": "0.5",
            },
            "spec.algorithm.algorithmSettings[3].name",
            "raises",
        ),
    ],
)
def test_pbt_settings_are_linted(settings, path, words):
    """pbt's settings are checked as Katib's pbt service checks them: the required ones present,
    n_population >= 5, truncation_threshold between 0 and 1; resample_probability, which v0.19's service
    raises on at the first suggestion, is an error too."""
    from tests.fake_trial import experiment

    exp = experiment(algorithm="pbt", settings=settings)
    hits = [p for p in lint_experiment(exp) if p.path == path and words in p.message]
    assert hits and hits[0].severity == "error", lint_experiment(exp)


def test_good_pbt_settings_pass():
    from tests.fake_trial import experiment

    exp = experiment(
        algorithm="pbt", settings={"suggestion_trial_dir": "/d", "n_population": "5", "truncation_threshold": "0.2"}
    )
    assert not [p for p in lint_experiment(exp) if p.severity == "error"]


def test_optuna_normal_is_not_called_an_admission_error():
    """A normal/logNormal distribution with an Optuna algorithm: Katib v0.19's webhook admits it, but its Optuna
    service drops the parameter, so no trial is created; reported as admitted-but-fails, not as an admission error."""
    from pipeline.lint.problems import ADMITTED_BUT_FAILS
    from tests.fake_trial import experiment

    exp = experiment(algorithm="multivariate-tpe")
    exp["spec"]["parameters"][0]["feasibleSpace"]["distribution"] = "normal"
    hits = [p for p in lint_experiment(exp) if p.path.endswith("feasibleSpace.distribution")]
    assert hits and hits[0].severity == "error"
    assert ADMITTED_BUT_FAILS in hits[0].message and "creates no trial" in hits[0].message


@pytest.mark.parametrize(
    "kind, fmt, severity, words",
    [
        ("StdOut", r"(?=a)(\w+)=([\d.]+)", "error", "Go's regexp cannot compile"),  # Katib admits, sidecar crashes
        ("File", r"(?=a)(\w+)=([\d.]+)", "error", "invalid filter"),  # the webhook rejects it
        ("StdOut", r"(\w+)=([\d.]+)\z", None, ""),  # RE2's \z is fine
        ("StdOut", r"(\pL+)=([\d.]+)", None, ""),
        ("StdOut", r"(\w+)=([\d.]+);?", "error", "arrives as"),  # '?' alone does not compile
        ("StdOut", r"(\w+)=([\d.]+);(x)", "warning", "arrives as"),  # split, but compiles
        ("Push", r"(\w+)=([\d.]+)", "warning", "ignored"),
    ],
)
def test_filters_are_judged_as_katibs_go_code_does(kind, fmt, severity, words):
    """Metric filters are judged as Katib's Go code judges them: RE2 syntax, the webhook compiles File filters
    only (a bad StdOut filter crashes the sidecar instead), ';' splits a filter in two, Push ignores them."""
    from tests.fake_trial import experiment

    exp = experiment(
        collector={
            "collector": {"kind": kind},
            "source": {
                "filter": {"metricsFormat": [fmt]},
                **({"fileSystemPath": {"path": "/var/log/m.log", "kind": "File"}} if kind == "File" else {}),
            },
        }
    )
    hits = [p for p in lint_experiment(exp) if "filter" in p.path]
    if severity is None:
        assert not hits, hits
    else:
        assert hits and hits[0].severity == severity and words in hits[0].message, hits


def test_missing_label_reference_fails_every_trial():
    """A trial parameter referencing `${trialSpec.Labels[k]}` with a key the template lacks: Katib admits it,
    then every trial fails ("failed to fetch Label")."""
    from pipeline.lint.problems import ADMITTED_BUT_FAILS
    from tests.fake_trial import experiment

    exp = experiment()
    exp["spec"]["trialTemplate"]["trialParameters"].append({"name": "app", "reference": "${trialSpec.Labels[app]}"})
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"].append("--app=${trialParameters.app}")
    hits = [p for p in lint_experiment(exp) if p.path == "spec.trialTemplate.trialParameters[2].reference"]
    assert hits and hits[0].severity == "error" and ADMITTED_BUT_FAILS in hits[0].message
    exp["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"labels": {"app": "digits"}}
    assert not [p for p in lint_experiment(exp) if p.path == "spec.trialTemplate.trialParameters[2].reference"]


def test_hyperband_stall_is_warned_with_katib_issues():
    """Katib v0.19's hyperband stall: maxTrialCount 30 with 9 in parallel stops after the first rung
    (kubeflow/katib#1168, #1366); the linter warns, and stays quiet about the shipped hyperband.yaml."""
    exp = load_experiment(REPO / "experiments" / "hyperband.yaml")
    assert not [p for p in lint_experiment(exp) if p.path == "spec.algorithm"]  # the shipped one ends
    exp["spec"]["maxTrialCount"] = 30
    hits = [p for p in lint_experiment(exp) if p.path == "spec.algorithm"]
    assert hits and hits[0].severity == "warning"
    assert "stalls after 9 trial(s)" in hits[0].message
    assert "kubeflow/katib/issues/1168" in hits[0].message and "kubeflow/katib/issues/1366" in hits[0].message


@pytest.mark.parametrize(
    "collector, flag, words",
    [
        ({"collector": {"kind": "Push"}}, False, "pushes only with --push-metrics"),
        (None, True, "--push-metrics beside the StdOut collector"),
    ],
)
def test_push_collector_and_the_trials_push_flag_must_agree(collector, flag, words):
    exp = load_experiment(EXPERIMENTS / "random.yaml")
    if collector:
        exp["spec"]["metricsCollectorSpec"] = collector
    if flag:
        exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append(
            "--push-metrics"
        )
    hits = [p for p in lint_experiment(exp, "x.yaml") if words in p.message]
    assert hits and hits[0].severity == "warning" and hits[0].path == "spec.trialTemplate.trialSpec"


def test_push_collector_with_the_flag_is_clean():
    exp = load_experiment(EXPERIMENTS / "random.yaml")
    exp["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "Push"}}
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"].append(
        "--push-metrics"
    )
    assert not [p for p in lint_experiment(exp, "x.yaml") if "push" in p.message.lower()]


@pytest.mark.parametrize(
    "kind,effect", [("StdOut", "every trial is MetricsUnavailable"), ("File", "shell syntax error")]
)
def test_a_trial_command_ending_in_a_newline_is_an_error(kind, effect):
    """Katib appends its wrapper after the command on a line of its own (seen on Katib: every trial
    MetricsUnavailable), so a script ending with a newline, as a YAML `|` block does, is refused."""
    from pipeline.lint.problems import ADMITTED_BUT_FAILS
    from tests.fake_trial import experiment

    exp = experiment()
    if kind == "File":
        exp["spec"]["metricsCollectorSpec"] = {
            "collector": {"kind": "File"},
            "source": {"fileSystemPath": {"kind": "File", "path": "/var/log/m.log", "format": "TEXT"}},
        }
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    words = container.get("args") or container["command"]
    field = "args" if container.get("args") else "command"
    path = f"spec.trialTemplate.trialSpec.spec.template.spec.containers[0].{field}[{len(words) - 1}]"
    assert not [p for p in lint_experiment(exp) if p.path == path]
    words[-1] += "\n"
    hits = [p for p in lint_experiment(exp) if p.path == path]
    assert hits and hits[0].severity == "error" and ADMITTED_BUT_FAILS in hits[0].message, hits
    assert effect in hits[0].message and "|-" in hits[0].message


def test_medianstop_with_a_sidecar_collector_notes_katibs_early_stop_stall():
    exp = variant(lambda e: spec(e).update(parallelTrialCount=2), base="random-medianstop")
    (note,) = [p for p in lint_experiment(exp, "x.yaml") if p.path == "spec.earlyStopping"]
    assert note.severity == "note" and "kubeflow/katib#1377" in note.message and "2 parallel slot(s)" in note.message
    push = variant(lambda e: spec(e)["metricsCollectorSpec"].update(collector={"kind": "Push"}), "random-medianstop")
    assert all("katib#1377" not in p.message for p in lint_experiment(push, "x.yaml"))
