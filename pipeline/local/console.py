"""What a dry-run tells the person running it, on stderr (all of it off with
`--no-progress`): how the run stands in for Katib when it starts, the trials it
waits for after the Experiment ended, and the warnings gathered on the way."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import MedianStopSettings
from pipeline.local.mounts import Mounts


class Console:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def _say(self, text: str) -> None:
        if self.enabled:
            click.echo(text, err=True)

    def start(
        self,
        exp: Experiment,
        out: Path,
        storage_url: str,
        notes: Iterable[str],
        medianstop: MedianStopSettings | None,
        mounts: Mounts,
        trial_args: Iterable[str],
    ) -> None:
        trial_args = list(trial_args)
        lines = [f"katib-digits tune: {exp.source} -> {out}  (storage {storage_url})"]
        lines += [f"  local vs Katib: {n}" for n in notes]
        if medianstop:
            lines.append(
                f"  early stopping: medianstop, Katib's rule (min_trials_required="
                f"{medianstop.min_trials_required}, start_step={medianstop.start_step})"
            )
        for mount in mounts.created:
            lines.append(f"  volume (writable, not given with --mount): {mount}")
        if mounts.unmapped:
            lines.append(
                f"  warning: volume mount(s) {', '.join(mounts.unmapped)} not mapped; pass "
                f"--mount {mounts.unmapped[0]}=LOCAL_DIR if the trial reads from them"
            )
        if trial_args:
            lines.append(f"  appended to every trial command (local only): {' '.join(trial_args)}")
        self._say("\n".join(lines))

    def still_running(self, experiment: str, reason: str, running: int) -> None:
        self._say(
            f"  {experiment}: {reason}; {running} trial(s) still running finish "
            "first, as on Katib (it does not stop them)"
        )

    def warnings(self, warnings: Iterable[str]) -> None:
        for w in warnings:
            self._say(f"warning: {w}")
