"""`katib-digits lint` on asha Experiments: the settings table applied with field paths (the same
rules the service's ValidateAlgorithmSettings applies), and the note that Katib does not ship asha."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipeline.cli.lint import lint_command
from pipeline.lint import lint_experiment
from tests.conftest import REPO
from tests.suggestion.katib_controller import asha_experiment

SETTINGS = "spec.algorithm.algorithmSettings"


def findings(exp):
    return [(p.severity, p.path, p.message) for p in lint_experiment(exp)]


def test_the_shipped_file_passes_strict_with_one_note_about_registration():
    result = CliRunner().invoke(lint_command, ["--strict", str(REPO / "experiments" / "asha.yaml")])
    assert result.exit_code == 0, result.output
    problems = findings(asha_experiment())
    assert [(s, p) for s, p, _ in problems] == [("note", "spec.algorithm.algorithmName")]
    assert "deploy/katib-config/asha.yaml" in problems[0][2] and "not one of Katib's built-in" in problems[0][2]


def test_another_unknown_algorithm_is_still_an_error():
    exp = asha_experiment()
    exp["spec"]["algorithm"]["algorithmName"] = "ashaa"
    assert ("error", "spec.algorithm.algorithmName") in [(s, p) for s, p, _ in findings(exp)]


@pytest.mark.parametrize(
    "settings, index, words",
    [
        ({"eta": "1"}, 1, "eta should be >= 2"),
        ({"min_resource": "zero"}, 2, "min_resource(zero)"),
        ({"max_resource": "27"}, 3, "max_resource 27 is above parameter epochs's max 9"),
        ({"min_resource": "3", "max_resource": "3"}, 3, "max_resource 3 must be greater than min_resource 3"),
        ({"base_sampler": "grid"}, 4, "base_sampler 'grid' is not supported"),
        ({"random_state": "-1"}, 5, "random_state should be >= 0"),
        ({"resource_name": "dropout"}, 0, "resource_name 'dropout' must be an int parameter"),
        ({"resource_name": "steps"}, 0, "resource_name 'steps' must be one of spec.parameters"),
    ],
)
def test_each_bad_setting_is_an_error_at_its_own_path(settings, index, words):
    errors = [(p, m) for s, p, m in findings(asha_experiment(**settings)) if s == "error"]
    assert errors == [(f"{SETTINGS}[{index}].value", errors[0][1])] and words in errors[0][1]


def test_defaults_and_unknown_settings():
    exp = asha_experiment(max_resource=None, min_resource=None, eta=None)  # max_resource: the parameter's max
    assert [s for s, _, _ in findings(exp)] == ["note"]
    errors = [(p, m) for s, p, m in findings(asha_experiment(brackets="2")) if s == "error"]
    assert errors == [(f"{SETTINGS}[6].name", errors[0][1])] and "unknown setting 'brackets'" in errors[0][1]
    # The setting the service writes back into its Suggestion is harmless in an Experiment.
    assert [s for s, _, _ in findings(asha_experiment(asha_promoted="1:abc"))] == ["note"]


def test_a_missing_default_resource_is_named():
    exp = asha_experiment(resource_name=None)
    exp["spec"]["parameters"] = [p for p in exp["spec"]["parameters"] if p["name"] != "epochs"]
    exp["spec"]["trialTemplate"]["trialParameters"] = [
        t for t in exp["spec"]["trialTemplate"]["trialParameters"] if t["name"] != "epochs"
    ]
    command = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    command[:] = [w for w in command if not w.startswith("--epochs=")]
    errors = [(p, m) for s, p, m in findings(exp) if s == "error"]
    assert errors == [
        (
            SETTINGS,
            "resource_name 'epochs' must be one of spec.parameters (learning-rate, lr-decay, "
            "batch-size, optimizer, conv-filters, dense-units, dropout, augment, arch)",
        )
    ]
