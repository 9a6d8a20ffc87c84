"""Run a Katib Experiment on this machine, as Katib's controllers would.

The loop (`DryRun`): while no end condition holds, ask the algorithm's proposer
(pipeline.local.proposers) for as many trials as Katib's ReconcileTrials would,
launch each (rendered into the trial command exactly as Katib renders it, the
volume mounts mapped by pipeline.local.mounts), wait for trial processes to end,
and judge each by Katib's trial rules (pipeline.katib.trial_rules: collector,
early stopping, Job backoff and deadline). The study (`pipeline.local.study`)
remembers everything, so a stopped run resumes.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.katib import collector as mc, status as ks
from pipeline.katib.budget import resource_override_refusal, resume_refusal, with_budget
from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import MedianStopSettings, StopCheck, threshold
from pipeline.katib.render import trial_argv
from pipeline.katib.trial_rules import JobLimits, judge
from pipeline.local import outputs, samplers
from pipeline.local.console import Console
from pipeline.local.mounts import Mounts
from pipeline.local.process import Runner, TrialRun, kill_group
from pipeline.local.proposers import Proposal, proposer_for
from pipeline.local.study import Store, katib_state, outcome


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LocalOptions:
    """How this machine stands in for the cluster (none of it changes the Experiment)."""

    out: Path
    mounts: dict[str, str]  # container path -> local folder
    storage: str | None = None  # Optuna storage URL (default: SQLite in `out`)
    trial_args: tuple[str, ...] = ()
    progress: bool = True
    report: bool = True  # report.html (plotly)


class DryRun:
    def __init__(self, exp: Experiment, options: LocalOptions, notes: Iterable[str] = ()):
        self.exp = exp
        self.options = options
        self.out = options.out
        self.objective = exp.objective
        self.max_trials = exp.max_trial_count
        self.cspec = mc.CollectorSpec.from_experiment(exp)
        self.algorithm = samplers.build_algorithm(exp)
        self.notes = list(self.algorithm.notes) + list(notes)
        if self.max_trials is None and not self.algorithm.ends_by_itself:
            self.notes.append(
                "maxTrialCount is not set: the experiment runs until its goal is reached "
                "(or forever); stop it with Ctrl-C"
            )
        self.medianstop = MedianStopSettings.from_experiment(exp)
        self.job = JobLimits.from_experiment(exp)
        self.mounts = Mounts.resolve(exp, options.mounts, self.out)
        self.storage_url = options.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        self.console = Console(enabled=options.progress)
        self.events: queue.Queue = queue.Queue()
        self.runner = Runner(self.cspec, self.events)
        self.active: dict[int, TrialRun] = {}
        self.hang: str | None = None  # where Katib v0.19 would stay Running forever
        self.signal: int | None = None
        self.warnings: list[str] = []
        self._published: list[tuple[str, str]] | None = None  # the trials' states experiment.json last showed

    # ------------------------------------------------------------ status
    def trials(self) -> list[Any]:
        """Recorded trials Katib would list (not the interrupted ones a retry replaces), in creation order."""
        return self.store.katib_trials()

    def outcomes(self) -> list[ks.TrialOutcome]:
        return [outcome(t) for t in self.trials()]

    def end_condition(self) -> tuple[str, str, str] | None:
        return ks.end_condition(
            self.outcomes(),
            self.objective,
            self.max_trials,
            self.exp.max_failed_trial_count,
            suggestions_ended=self.proposer.exhausted and not self.active,
        )

    # ------------------------------------------------------------ launching
    def launch(self, proposal: Proposal) -> None:
        trial, strings = proposal.trial, proposal.assignments
        name = self.store.new_trial_name(self.exp.name)
        trial_dir = self.out / "trials" / name
        extra_mounts: dict[str, str] = {}
        metrics_path = None
        if self.cspec.kind == "File":
            path = self.cspec.path
            assert path is not None  # a File collector without its path does not pass lint.load
            # Katib mounts an emptyDir at the metrics file's folder; here, a folder per trial.
            folder = os.path.dirname(path)
            extra_mounts[folder] = str((trial_dir / "metrics").resolve())
            metrics_path = Path(extra_mounts[folder]) / os.path.basename(path)
        argv = trial_argv(
            self.exp,
            strings,
            self.algorithm.style,
            trial_name=name,
            map_word=lambda w: self.mounts.map_paths(w, extra_mounts),
        ) + list(self.options.trial_args)
        env = dict(os.environ)
        for e in self.exp.primary_container().get("env") or []:
            if "value" in e:
                env[e["name"]] = self.mounts.map_paths(str(e["value"]), extra_mounts)
        env.setdefault("PYTHONUNBUFFERED", "1")
        stop = None
        if self.medianstop is not None:
            value = threshold(self._succeeded_reports(), self.medianstop)
            if value is not None:
                stop = StopCheck(value, self.objective.maximize, self.medianstop.start_step)
        deadline = time.time() + float(self.job.deadline_s) if self.job.deadline_s else None
        run = TrialRun(
            name=name,
            number=trial.number,
            optuna_trial=trial,
            assignments=strings,
            argv=argv,
            env=env,
            log_path=trial_dir / "trial.log",
            metrics_path=metrics_path,
            deadline=deadline,
            stop=stop,
        )
        for key, value in {
            "name": name,
            "assignments": strings,
            "katib_state": ks.RUNNING,
            "argv": argv,
            "start": time.time(),
            "early_stopping_rule": stop.value if stop else None,
            **{k: v for k, v in proposal.attrs.items() if v is not None},
        }.items():
            trial.set_user_attr(key, value)
        self.store.mark_running(trial)
        self.active[trial.number] = run
        self.runner.start(run)

    def _succeeded_reports(self) -> list[list[float]]:
        return [t.user_attrs.get("reports") or [] for t in self.trials() if katib_state(t) == ks.SUCCEEDED]

    # ------------------------------------------------------------ finishing
    def finish(self, run: TrialRun) -> None:
        """Judge one ended trial by Katib's trial rules, then record it."""
        end = run.end()
        verdict = judge(self.cspec, run.collected_text(), end, self.job, run.stop)
        if verdict.non_numeric:
            self.warnings.append(
                f"{run.name}: objective {self.cspec.objective} was reported as "
                f"{verdict.metrics.objective!r}, not a number; Katib records it the same way "
                "(and may even pick this trial as the best)"
            )
        self.store.record_end(run.optuna_trial, verdict, end)

    def handle_exit(self, run: TrialRun, attempt: int) -> None:
        if run.number not in self.active or attempt != run.attempt:
            return
        if self.job.starts_another_pod(run.end()) and self.signal is None:
            self.runner.start(run)  # the Job controller starts a new pod until backoffLimit is reached
            return
        del self.active[run.number]
        self.finish(run)

    # ------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        self.store = Store(self.storage_url, self.exp.name, self.algorithm.sampler, self.objective.maximize, self.out)
        try:
            self.proposer = proposer_for(self.algorithm, self.store)
            self._check_restart()
            self.store.claim(self.exp.spec, self.exp.source)
            self.proposer.resume()
            self.start_time = self.store.study.user_attrs.get("startTime") or _now()
            self.store.study.set_user_attr("startTime", self.start_time)
            self.console.start(
                self.exp, self.out, self.storage_url, self.notes, self.medianstop, self.mounts, self.options.trial_args
            )
            end = self._loop()
            if end is not None:
                attrs = self.store.study.user_attrs
                # An Experiment ends once: running a finished one again keeps its completionTime, as Katib's does.
                if attrs.get("end") != list(end) or attrs.get("endTime") is None:
                    self.store.study.set_user_attr("endTime", time.time())
                self.store.study.set_user_attr("end", list(end))
            self.status = outputs.write(self._snapshot(end))
            self.console.warnings(self.warnings)
        finally:
            self.store.release()
        return self.status

    def _check_restart(self) -> None:
        """A completed study run again with another spec (a raised budget) is an edit of a completed
        Experiment: refused unless Katib's webhook would admit it (budget.resume_refusal)."""
        attrs = self.store.study.user_attrs
        prev_spec, prev_end = attrs.get("spec"), attrs.get("end")
        if prev_spec is None or prev_end is None or prev_spec == self.exp.spec:
            return
        why = resume_refusal(self.exp.resume_policy, prev_end[1], len(self.trials()), self.max_trials)
        if why:
            raise UserError(
                f"{self.exp.source}: this Experiment already ended ({prev_end[1]}) in {self.out}; "
                f"{why}. Use another --out, or set resumePolicy: LongRunning to continue it"
            )
        self.store.study.set_user_attr("end", None)

    def _loop(self) -> tuple[str, str, str] | None:
        """Katib's reconcile loop: end conditions first, then as many new trials as ReconcileTrials asks
        for, then wait for a trial to end."""
        bar = outputs.Progress(self.exp.name, self.max_trials, enabled=self.options.progress)
        end: tuple[str, str, str] | None = None
        old = self._install_signals()
        try:
            while True:
                self.store.heartbeat(list(self.active))
                if self.signal is not None:
                    break
                end = self.end_condition()
                if end is not None:
                    break
                want = ks.trials_to_add(
                    self.outcomes(), self.max_trials, self.exp.parallel_trial_count, running=len(self.active)
                )
                for proposal in self.proposer.propose(want):
                    self.launch(proposal)
                bar.update(self.outcomes(), self.objective, running=len(self.active))
                self._publish()
                end = self.end_condition()
                if end is not None:
                    break
                if not self.active:
                    if self.proposer.exhausted:
                        continue
                    self.hang = ks.early_stop_stall(self.outcomes(), self.exp.parallel_trial_count)
                    self.hang = self.hang or self.proposer.stall()
                    if self.hang is None:
                        raise RuntimeError("no trial is running and the algorithm proposes none")  # a bug if reached
                    self.warnings.append(self.hang)
                    break
                self._wait_events()
            if end is not None and self.active:
                # Katib does not stop the trials still running when an Experiment ends: they run to
                # their own end and their outcomes still enter the status (and may become the best);
                # only the end condition stays. The local run waits for them the same way.
                self.console.still_running(self.exp.name, end[1], len(self.active))
                while self.active and self.signal is None:
                    self.store.heartbeat(list(self.active))
                    self._wait_events()
        finally:
            self._restore_signals(old)
            if self.signal is not None or sys.exc_info()[0] is not None:
                self._interrupt()
            bar.update(self.outcomes(), self.objective, running=len(self.active))
            bar.close()
        return end

    def _publish(self) -> None:
        """experiment.json and trials.csv as of now whenever a trial has been added or has ended, as Katib
        updates the Experiment's status while it runs: a long tune can be read (or followed with `watch`)
        before its end, not only after it. report.html waits for the end."""
        states = [(o.name, o.state) for o in self.outcomes()]
        if states != self._published:
            self._published = states
            outputs.write(self._snapshot(None))

    def _snapshot(self, end: tuple[str, str, str] | None) -> outputs.Snapshot:
        return outputs.Snapshot(
            experiment=self.exp,
            trials=self.trials(),
            study=self.store.study,
            out=self.out,
            start_time=self.start_time,
            end=end,
            end_time=self.store.study.user_attrs.get("endTime") if end is not None else None,
            storage_url=self.storage_url,
            notes=self.algorithm.notes,
            trial_args=list(self.options.trial_args),
            metric_names=self.cspec.metric_names,
            signal=self.signal,
            html=self.options.report,
            hang=self.hang,
        )

    def _wait_events(self) -> None:
        timeout = 5.0
        deadlines = [r.deadline for r in self.active.values() if r.deadline]
        if deadlines:
            timeout = max(0.05, min(timeout, min(deadlines) - time.time()))
        try:
            self._handle(self.events.get(timeout=timeout))
            while True:
                self._handle(self.events.get_nowait())
        except queue.Empty:
            pass
        now = time.time()
        for run in list(self.active.values()):
            # (run.proc is None for a command that could not start: its exit is already queued)
            if run.deadline and now >= run.deadline and not run.timed_out and run.proc is not None:
                run.timed_out = True
                kill_group(run.proc)

    def _handle(self, ev) -> None:
        if ev[0] == "exit":
            self.handle_exit(ev[1], ev[2])

    def _interrupt(self) -> None:
        """Stop every running trial; they are recorded Interrupted and retried by the next run."""
        for run in list(self.active.values()):
            run.killed = True
            if run.proc is not None:
                kill_group(run.proc)
        for run in list(self.active.values()):
            self.store.interrupt(run.optuna_trial)
        self.active.clear()

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, _frame):
            self.signal = signum
            self.events.put(("signal", signum))

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, old) -> None:
        for s, h in (old or {}).items():
            signal.signal(s, h)


def run_experiment(
    experiment: str | Path | dict[str, Any] | Experiment,
    out_dir: str | Path | None = None,
    mounts: dict[str, str] | None = None,
    storage: str | None = None,
    max_trial_count: int | None = None,
    parallel_trial_count: int | None = None,
    trial_args: Iterable[str] = (),
    progress: bool = True,
    report: bool = True,
) -> dict[str, Any]:
    """Run an Experiment locally; returns the experiment.json object (Katib's shape).
    `experiment`: a YAML path, a dict or an Experiment; it is validated like `lint` does.
    `report=False` skips report.html (plotly), e.g. in tests.
    SIGINT/SIGTERM: the outputs are written, then SystemExit(128 + signal) is raised, so a
    caller (a pipeline step, a script) stops too instead of taking a half-run for a result."""
    dry = dry_run(
        experiment, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args, progress, report
    )
    if dry.signal is not None:
        raise SystemExit(128 + dry.signal)
    return dry.status


def dry_run(
    experiment,
    out_dir=None,
    mounts=None,
    storage=None,
    max_trial_count=None,
    parallel_trial_count=None,
    trial_args=(),
    progress=True,
    report=True,
    max_failed_trial_count=None,
) -> DryRun:
    """Build and run the DryRun (the object, for callers that read its trials)."""
    from pipeline import lint

    exp = experiment if isinstance(experiment, Experiment) else lint.load(experiment)
    for arg in trial_args:  # hyperband's and asha's epochs are the algorithm's, per rung
        problem = resource_override_refusal(exp, arg, f"--trial-arg={arg}")
        if problem:
            raise UserError(problem)
    budgeted = with_budget(exp, max_trial_count, parallel_trial_count, max_failed_trial_count)
    out = Path(out_dir) if out_dir else Path("runs") / exp.name
    options = LocalOptions(
        out=out,
        mounts=dict(mounts or {}),
        storage=storage,
        trial_args=tuple(trial_args),
        progress=progress,
        report=report,
    )
    dry = DryRun(budgeted.experiment, options, notes=budgeted.notes)
    dry.run()
    return dry
