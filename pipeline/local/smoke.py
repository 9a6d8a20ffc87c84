"""`katib-digits lint --run`: render one trial from the spec, run it through the
same runner and collector as `tune`, and fail when Katib would not collect the
objective metric."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline import lint
from pipeline.errors import UserError
from pipeline.katib import collector as mc, status as ks
from pipeline.local.controller import dry_run
from pipeline.local.study import katib_state


def smoke_check(path: str, mounts: dict[str, str], trial_args: list[str]) -> None:
    """Run one trial of the Experiment at `path` (no early stopping); UserError, with the trial's
    last lines, when its objective metric is not collected as a number."""
    exp = lint.load(path).with_spec(earlyStopping=None)
    objective = exp.objective.metric
    with tempfile.TemporaryDirectory(prefix="katib-digits-smoke-") as tmp:
        dry = dry_run(
            exp,
            Path(tmp) / "run",
            mounts,
            max_trial_count=1,
            parallel_trial_count=1,
            max_failed_trial_count=1,
            trial_args=trial_args,
            progress=False,
            report=False,
        )
        done = dry.trials()
        if not done:
            raise UserError(f"{path}: no trial ran")
        trial = done[0]
        log_path = Path(tmp) / "run" / "trials" / trial.user_attrs["name"] / "trial.log"
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:]) if log_path.exists() else ""
        state, message = katib_state(trial), trial.user_attrs.get("message")
        if state == ks.SUCCEEDED:
            value = trial.user_attrs.get("objective", "")
            if mc.go_parse_float(value) is None:
                raise UserError(
                    f"{path}: the trial's objective {objective!r} was collected as {value!r}, not a "
                    "number (the default filter reads `nan` as an empty value); Katib would record it "
                    f"the same way. Last lines of the trial:\n{tail}"
                )
            return
        if state == ks.METRICS_UNAVAILABLE:
            raise UserError(
                f"{path}: one trial ran but its objective metric {objective!r} was never collected "
                f"({message}). Katib would mark it MetricsUnavailable. Print lines like "
                f"`{objective}=0.98` (name=value) to stdout. Last lines of the trial:\n{tail}"
            )
        raise UserError(f"{path}: the trial {state}: {message}. Last lines of the trial:\n{tail}")
