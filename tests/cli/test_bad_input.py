"""Bad input everywhere a user types gets one line naming the file and field, exit 2,
and no traceback unless --debug (issue 8). Each case runs the console command in
process (click's CliRunner); --debug runs it as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from pipeline.errors import UserError
from pipeline.katib.experiment import parse_experiment, with_defaults
from pipeline.lint import lint_experiment
from tests.conftest import REPO, Ran, katib_digits

GOOD_YAML = (REPO / "experiments" / "random.yaml").read_text()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_one_line_error(proc: Ran, *expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("katib-digits: error:", "Error:"))]
    assert len(errors) == 1, proc.stderr
    for text in expected:
        assert text in errors[0], errors[0]


EXPERIMENT_CASES = {
    "not YAML": ("spec: [unclosed\n", "not valid YAML"),
    "wrong kind": (GOOD_YAML.replace("kind: Experiment", "kind: Trial"), "kind: expected 'Experiment'"),
    "wrong apiVersion": (GOOD_YAML.replace("kubeflow.org/v1beta1", "kubeflow.org/v1alpha3"), "apiVersion: expected"),
    "two documents": (GOOD_YAML + "\n---\n" + GOOD_YAML, "2 YAML documents"),
    "unknown algorithm setting": (
        GOOD_YAML.replace(
            "algorithmName: random",
            'algorithmName: random\n    algorithmSettings:\n      - name: n_startup\n        value: "3"',
        ),
        "spec.algorithm.algorithmSettings",
    ),
    "objective also an additional metric": (
        GOOD_YAML.replace("      - loss\n", "      - val_accuracy\n"),
        "spec.objective.additionalMetricNames",
    ),
}


@pytest.mark.parametrize("case", EXPERIMENT_CASES, ids=list(EXPERIMENT_CASES))
def test_tune_refuses_a_bad_experiment_before_running_anything(tmp_path, case):
    text, expected = EXPERIMENT_CASES[case]
    path = write(tmp_path / "exp.yaml", text)
    proc = katib_digits("tune", str(path), "--out", str(tmp_path / "out"), "--no-progress")
    assert_one_line_error(proc, str(path), expected)
    assert not (tmp_path / "out" / "experiment.json").exists()


def test_missing_experiment_file(tmp_path):
    proc = katib_digits("tune", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content,expected",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({**yaml.safe_load(GOOD_YAML), "status": {"conditions": []}}), "currentOptimalTrial"),
        ('{"bestTrialName": "t", "parameterAssignments": []}', "parameterAssignments: empty"),
        ('{"bestTrialName": "t", "parameterAssignments": [{"name": "dropout", "value": "0.2"}]}', "--experiment"),
    ],
)
def test_train_with_bad_params_file(tmp_path, content, expected):
    params = write(tmp_path / "experiment.json", content)
    proc = katib_digits("train", "--params", str(params), "--out", str(tmp_path / "model"))
    assert_one_line_error(proc, str(params), expected)


def test_pipeline_run_with_missing_data_folder(tmp_path):
    proc = katib_digits(
        "pipeline", "run", "--local", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")
    )
    assert_one_line_error(proc, "nowhere")


def test_predict_with_missing_model(tmp_path):
    proc = katib_digits("predict", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "s.csv"))
    assert_one_line_error(proc, "no-model")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["tune", "--no-such-flag", "x.yaml"], "No such option '--no-such-flag'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["tune", "experiments/random.yaml", "--max-trial-count", "many"], "'many' is not a valid integer"),
    ],
)
def test_bad_cli_flags(args, expected):
    assert_one_line_error(katib_digits(*args), expected)


@pytest.mark.process
def test_debug_shows_the_traceback(tmp_path):
    """The installed console command, as a process: --debug lets the traceback out."""
    path = write(tmp_path / "exp.yaml", "spec: [unclosed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--debug", "tune", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserError: " in proc.stderr


# --- property-based: the spec loader and the linter never crash -------------------------

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
json_like = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_an_experiment_or_a_user_error(text):
    try:
        exp = parse_experiment(text, source="fuzz.yaml")
    except UserError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "\n" not in str(exc)
    else:
        assert exp["kind"] == "Experiment"


spec_keys = st.sampled_from(
    [
        "objective",
        "algorithm",
        "parameters",
        "trialTemplate",
        "maxTrialCount",
        "parallelTrialCount",
        "maxFailedTrialCount",
        "earlyStopping",
        "metricsCollectorSpec",
        "resumePolicy",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(spec_keys, json_like, max_size=8))
def test_any_spec_shape_lints_without_crashing(spec):
    exp = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "fuzz"}, "spec": spec}
    with_defaults(exp)
    problems = lint_experiment(exp, "fuzz.yaml")
    assert all(p.path and p.message for p in problems)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.sampled_from(["objective", "algorithm", "parameters", "trialTemplate"]), json_like)
def test_corrupting_one_field_of_a_real_experiment_is_reported_not_crashed(_, key, value):
    exp = yaml.safe_load(GOOD_YAML)
    exp["spec"][key] = value
    problems = lint_experiment(exp, "fuzz.yaml")
    assert any(p.severity == "error" for p in problems) or value == yaml.safe_load(GOOD_YAML)["spec"][key]
