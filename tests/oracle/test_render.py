"""Rendering a trial: Katib's manifest generator (GetRunSpecWithHyperParameters:
applyParameters' substitution and metadata references) and the pod webhook's `sh -c`
wrapping, against pipeline.katib.render."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, strategies as st

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment, with_defaults
from pipeline.katib.render import katib_shell_line, render_trial_spec
from tests.oracle.conftest import hypothesis_settings
from tests.oracle.experiments import base_experiment

pytestmark = pytest.mark.process

VALUES = [
    "0.001",
    "1e-05",
    "13",
    "adam",
    "a b",
    'x"y',
    "<b>&",
    "100%",
    "é",
    "$HOME",
    "a\\tb",
    "a\\qb",
    "",
    "-1",
    "'q'",
    "a;b",
]  # a value holding a placeholder: Katib's order is random (docs/dryrun.md)
REFS = [
    "lr",
    "units",
    "opt",
    "${trialSpec.Name}",
    "${trialSpec.Namespace}",
    "${trialSpec.Kind}",
    "${trialSpec.APIVersion}",
    "${trialSpec.Labels[app]}",
    "${trialSpec.Labels[nope]}",
    "${trialSpec.Annotations[note]}",
    "x-${trialSpec.Name}",
    "${trialSpec.Name}-x",
    "${trialSpec.Bogus}",
    "${trialSpec.Name[0]}",
    "ghost",
]
WORDS = ["python", "-m", "trial", "--flag", "'quoted arg'", 'a"b', "$X", "x>y"]


@st.composite
def render_cases(draw):
    exp = base_experiment()
    tt = exp["spec"]["trialTemplate"]
    tt["trialSpec"]["metadata"] = draw(
        st.sampled_from(
            [{"labels": {"app": "digits"}, "annotations": {"note": "hi there"}}, {"labels": {"app": "digits"}}, {}]
        )
    )
    container = tt["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    tps = [
        {"name": "lr", "reference": "lr"},
        {"name": "units", "reference": "units"},
        {"name": "opt", "reference": "opt"},
    ]
    if draw(st.booleans()):
        tps.pop(draw(st.integers(0, 2)))  # an assigned parameter nobody references
    for i in range(draw(st.integers(0, 2))):
        tps.append({"name": f"m{i}", "reference": draw(st.sampled_from(REFS))})
    tt["trialParameters"] = tps
    words = [draw(st.sampled_from(WORDS)) for _ in range(draw(st.integers(0, 3)))]
    for tp in tps:
        words.append(
            draw(
                st.sampled_from(
                    ["--{n}=${{trialParameters.{n}}}", "${{trialParameters.{n}}}", "x${{trialParameters.{n}}}y"]
                )
            ).format(n=tp["name"])
        )
    shell = draw(st.sampled_from([[], [], ["sh", "-c"], ["bash", "-c"]]))
    split = draw(st.integers(0, len(words)))
    container["command"], container["args"] = shell + words[:split], words[split:]
    if not container["args"]:
        del container["args"]
    exp["spec"]["metricsCollectorSpec"] = draw(
        st.sampled_from(
            [
                {"collector": {"kind": "StdOut"}},
                {"collector": {"kind": "File"}, "source": {"fileSystemPath": {"path": "/out/m.log", "kind": "File"}}},
            ]
        )
    )
    assignments = {p: draw(st.sampled_from(VALUES)) for p in ("lr", "units", "opt")}
    return (
        exp,
        assignments,
        draw(st.sampled_from(["digits-bcdf2456", "t"])),
        draw(st.sampled_from(["default", "team-a"])),
    )


def _strip(job: dict) -> dict:
    job = copy.deepcopy(job)
    meta = job.get("metadata") or {}
    meta.pop("name", None)
    meta.pop("namespace", None)
    if not meta:
        job.pop("metadata", None)
    return job


def _check(oracle, exp, assignments, trial_name, namespace):
    answer = oracle.ask(
        "render",
        experiment=exp,
        trial_name=trial_name,
        namespace=namespace,
        assignments=[{"name": k, "value": v} for k, v in assignments.items()],
    )
    assert "panic" not in answer, answer
    defaulted = Experiment(with_defaults(exp))
    try:
        ours = render_trial_spec(defaulted, assignments, "python", trial_name, namespace)
    except UserError as exc:
        assert "render_error" in answer, (str(exc), answer, exp["spec"]["trialTemplate"], assignments)
        return
    assert "render_error" not in answer, (answer["render_error"], ours)
    assert _strip(answer["run_spec"]) == _strip(ours)
    container = defaulted.primary_container(ours)
    words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
    shell, line = katib_shell_line(words)
    if not container.get("command"):
        # Katib then reads the image's ENTRYPOINT from the registry (the oracle has none to ask);
        # docs/dryrun.md: the local run cannot, and runs the args alone.
        assert "wrap_error" in answer and "command" not in answer, answer
        return
    assert answer["command"] == shell, answer
    kind = defaulted.collector_kind
    suffix = " 1>/var/log/katib/metrics.log 2>&1 && " if kind == "StdOut" else " && "
    assert answer["args"][0].startswith(line + suffix), (answer["args"], line)


@hypothesis_settings(600)
@given(render_cases())
def test_generated_templates_render_as_katib_does(oracle, case):
    _check(oracle, *case)


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("${trialSpec.Namespace}", "team-a"),  # the namespace the Experiment runs in (item 8)
        ("x-${trialSpec.Name}", "digits-bcdf2456"),  # unanchored: the text around it is dropped (item 8)
        ("${trialSpec.Labels[app]}", "digits"),
        ("${trialSpec.Labels[nope]}", None),  # a missing label fails the trial (item 2)
    ],
)
def test_metadata_references(oracle, ref, expected):
    exp = base_experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"labels": {"app": "digits"}}
    exp["spec"]["trialTemplate"]["trialParameters"].append({"name": "meta", "reference": ref})
    container = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"].append("--meta=${trialParameters.meta}")
    assignments = {"lr": "0.1", "units": "8", "opt": "adam"}
    _check(oracle, exp, assignments, "digits-bcdf2456", "team-a")
    if expected is None:
        with pytest.raises(UserError, match="failed to fetch Label"):
            render_trial_spec(Experiment(with_defaults(exp)), assignments, "python", "t", "team-a")
    else:
        job = render_trial_spec(Experiment(with_defaults(exp)), assignments, "python", "digits-bcdf2456", "team-a")
        cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
        assert cmd[-1] == f"--meta={expected}"


def test_unreferenced_parameter_makes_katib_create_no_trial(oracle):
    """A search-space parameter that no trialParameter references: Katib's applyParameters refuses to render
    every trial, and so does render_trial_spec."""
    exp = base_experiment()
    exp["spec"]["parameters"].append(
        {"name": "extra", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
    )
    assignments = {"lr": "0.1", "units": "8", "opt": "adam", "extra": "0.5"}
    answer = oracle.ask(
        "render",
        experiment=exp,
        trial_name="t",
        namespace="default",
        assignments=[{"name": k, "value": v} for k, v in assignments.items()],
    )
    assert "unable to find parameter from ParameterAssignment in TrialParameters" in answer["render_error"]
    with pytest.raises(UserError, match="no trialParameter references"):
        render_trial_spec(Experiment(with_defaults(exp)), assignments, "python", "t")
