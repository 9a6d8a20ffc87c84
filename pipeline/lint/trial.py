"""Stricter than Katib: when the trial template runs our own `python -m trial`,
render it with sample values and parse it with the trial's own parser, and
check that the objective is a metric the trial prints."""

from __future__ import annotations

import contextlib
import io
import shlex
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.katib.render import trial_argv
from pipeline.lint.problems import Findings, as_dict, as_list
from trial.metrics import METRIC_NAMES, TRAIN_METRIC_NAMES


def _sample_value(param: dict[str, Any]) -> Any:
    space = as_dict(param.get("feasibleSpace"))
    if param.get("parameterType") in ("categorical", "discrete"):
        values = as_list(space.get("list"))
        return values[0] if values else ""
    low = float(space["min"])  # KeyError, TypeError, ValueError: a template lint_trial cannot render
    high = float(space["max"])
    middle = (low * high) ** 0.5 if space.get("distribution") == "logUniform" and low > 0 else (low + high) / 2
    return int(round(middle)) if param.get("parameterType") == "int" else middle


def check_our_trial(exp: dict[str, Any]) -> Findings:
    """When the primary container runs `python -m trial`, render it with sample values
    and parse it with the trial's own parser; check the metrics it can print."""
    found = Findings()
    spec = as_dict(exp.get("spec"))
    try:
        samples = {p["name"]: _sample_value(p) for p in as_list(spec.get("parameters"))}
        argv = trial_argv(Experiment(exp), samples, trial_name="lint-trial")
    except (UserError, KeyError, TypeError, ValueError, AttributeError):
        return found  # not a Job template we can render; Katib's rules cover it
    if "-m" not in argv or argv.index("-m") + 1 >= len(argv) or argv[argv.index("-m") + 1] != "trial":
        return found
    args = argv[argv.index("-m") + 2 :]
    where = "spec.trialTemplate.trialSpec"
    from trial.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = build_parser().parse_args(args)
    except SystemExit:
        said = stderr.getvalue().strip().splitlines()
        found.warning(
            where,
            f"the trial rejects its arguments: {said[-1] if said else 'usage error'} "
            f"(rendered with sample values: python -m trial {shlex.join(args)})",
        )
        return found
    metrics = METRIC_NAMES if parsed.val_fraction > 0 else TRAIN_METRIC_NAMES
    objective = as_dict(spec.get("objective"))
    wanted = [objective.get("objectiveMetricName"), *as_list(objective.get("additionalMetricNames"))]
    for name in wanted:
        if isinstance(name, str) and name not in metrics:
            found.warning(
                "spec.objective",
                f"metric {name!r} is never printed by `python -m trial` (it prints {', '.join(metrics)})",
            )
    kind = as_dict(as_dict(as_dict(spec.get("metricsCollectorSpec")).get("collector"))).get("kind", "StdOut")
    if kind == "Push" and not parsed.push_metrics:
        found.warning(
            where,
            "the Push collector reads only what the trial pushes, and `python -m trial` "
            "pushes only with --push-metrics: every trial would end MetricsUnavailable",
        )
    elif kind != "Push" and parsed.push_metrics:
        found.warning(
            where,
            f"--push-metrics beside the {kind} collector: Katib would record every epoch twice "
            "(the sidecar's reading and the push)",
        )
    return found
