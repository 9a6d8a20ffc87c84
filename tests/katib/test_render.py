"""Values rendered as Katib renders them, substituted and word-split like Katib's wrapper."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, strategies as st

from pipeline.errors import UserError
from pipeline.katib.algorithms import render_style
from pipeline.katib.collector import go_parse_float
from pipeline.katib.experiment import Experiment
from pipeline.katib.render import render_value, substitute, trial_argv
from tests.fake_trial import experiment


@pytest.mark.parametrize(
    "value,style,expected",
    [
        (0.001, "python", "0.001"),
        (1e-05, "python", "1e-05"),
        (13, "python", "13"),
        (1e-05, "goptuna", "0.00001"),
        (0.001, "goptuna", "0.001"),
        (13, "goptuna", "13"),
        (2.5e16, "goptuna", "25000000000000000"),
        (0.1 + 0.2, "python", "0.30000000000000004"),
        ("adam", "python", "adam"),
        ("adam", "goptuna", "adam"),
        (3.0, "python", "3.0"),
        (3.0, "goptuna", "3"),
    ],
)
def test_render_value(value, style, expected):
    assert render_value(value, style) == expected


@pytest.mark.parametrize(
    "name,style",
    [
        ("cmaes", "goptuna"),
        ("sobol", "goptuna"),
        ("random", "python"),
        ("tpe", "python"),
        ("bayesianoptimization", "python"),
        ("multivariate-tpe", "python"),
        ("grid", "python"),
        ("hyperband", "python"),
    ],
)
def test_render_style(name, style):
    assert render_style(name) == style


def test_substitute_is_plain_string_replace():
    obj = {"a": ["--lr=${trialParameters.lr}", "${trialParameters.lr}${trialParameters.opt}"], "b": 1}
    assert substitute(obj, {"lr": "1e-05", "opt": "adam"}) == {"a": ["--lr=1e-05", "1e-05adam"], "b": 1}


def test_substitute_value_with_quote_is_reported():
    with pytest.raises(UserError, match="not valid JSON"):
        substitute({"a": "${trialParameters.x}"}, {"x": 'a"b'})


def test_trial_argv_resolves_python_and_splits_words():
    exp = Experiment(experiment(args=["--cat=two words"]))
    argv = trial_argv(exp, {"x": 1e-05, "y": 3}, "python")
    assert argv[0] == sys.executable
    assert argv[2:] == ["--x=1e-05", "--y=3", "--cat=two", "words"]
    assert trial_argv(exp, {"x": 1e-05, "y": 3}, "goptuna")[2] == "--x=0.00001"


def test_trial_argv_keeps_a_leading_sh_c():
    exp = experiment()
    c = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    c["command"] = ["sh", "-c"]
    c["args"] = ["python3 train.py --x=${trialParameters.x} --y=${trialParameters.y}"]
    assert trial_argv(Experiment(exp), {"x": 0.5, "y": 2})[1:] == ["train.py", "--x=0.5", "--y=2"]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(finite, st.sampled_from(["python", "goptuna"]))
def test_rendered_floats_parse_back(value, style):
    text = render_value(value, style)
    assert go_parse_float(text) == value
    if style == "goptuna":
        assert "e" not in text.lower()


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["python", "goptuna"]))
def test_rendered_ints_parse_back(value, style):
    assert int(render_value(value, style)) == value
