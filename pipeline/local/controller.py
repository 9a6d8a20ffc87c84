"""Run a Katib Experiment on this machine, as Katib's controllers would.

The loop: while no end condition holds, fill the free parallel slots with the
algorithm's proposals (rendered into the trial command exactly as Katib
renders it), wait for trial processes to end, and judge each like Katib's
trial controller (collector, early stopping, Job backoff and deadline). The
study (`pipeline.local.study`) remembers everything, so a stopped run resumes.
"""
from __future__ import annotations

import math
import os
import queue
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import click

from pipeline.errors import UserError
from pipeline.katib import collector as mc
from pipeline.katib import status as ks
from pipeline.katib.budget import resume_refusal, with_budget
from pipeline.katib.experiment import Experiment
from pipeline.katib.medianstop import MedianStopSettings, StopCheck, threshold
from pipeline.katib.render import render_value, trial_argv
from pipeline.local import outputs, samplers
from pipeline.local.hyperband import KATIB_ISSUES, WAIT, HyperbandState, NotReady, SeenTrial
from pipeline.local.process import Runner, TrialRun, kill_group
from pipeline.local.study import INTERRUPTED, Store, katib_state, outcome

DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes Job default: a failing pod is retried this many times
# Katib's trial names: `<experiment>-<8 random characters>` (utilrand.String(8) in suggestionclient.go).
TRIAL_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery utilrand's alphanums


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LocalOptions:
    """How this machine stands in for the cluster (none of it changes the Experiment)."""

    out: Path
    mounts: dict[str, str]          # container path -> local folder
    storage: str | None = None      # Optuna storage URL (default: SQLite in `out`)
    trial_args: tuple[str, ...] = ()
    progress: bool = True
    report: bool = True             # report.html (plotly)


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
        if self.max_trials is None and self.algorithm.grid_size is None and self.algorithm.hyperband is None:
            self.notes.append("maxTrialCount is not set: the experiment runs until its goal is reached "
                              "(or forever); stop it with Ctrl-C")
        self.medianstop = MedianStopSettings.from_experiment(exp)
        job = exp.trial_spec.get("spec") or {}
        self.deadline_s = job.get("activeDeadlineSeconds")
        self.backoff_limit = int(job.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)) if exp.trial_spec.get("kind") == "Job" else 0
        self.auto_mounts: list[str] = []
        self.mounts, self.unmapped = self._mounts(options.mounts)
        self.storage_url = options.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        self.events: queue.Queue = queue.Queue()
        self.runner = Runner(self.cspec, self.events)
        self.active: dict[int, TrialRun] = {}
        self.exhausted = False
        self.hang: str | None = None  # where Katib v0.19 would stay Running forever
        self._hyperband_refusal = "the hyperband service gave no answer"
        self.signal: int | None = None
        self.warnings: list[str] = []

    # ------------------------------------------------------------ set-up
    def _mounts(self, mounts: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """--mount folders by container path, and the read-only mounts left unmapped (the trial's input,
        which only the user can provide). A writable mount left unmapped (asha's checkpoints) gets a
        folder of the run's own, OUT/volumes/NAME, kept across a resumed run like a PVC."""
        declared = self.exp.primary_container().get("volumeMounts") or []
        out = {}
        for path, local in mounts.items():
            if not path.startswith("/"):
                raise UserError(f"--mount {path}={local}: the container path must be absolute")
            if not Path(local).is_dir():
                raise UserError(f"--mount {path}={local}: {local} is not a directory")
            out[path.rstrip("/") or "/"] = str(Path(local).resolve())
        for m in declared:
            path = (m.get("mountPath") or "").rstrip("/")
            if path and path not in out and not m.get("readOnly") and m.get("name"):
                folder = self.out / "volumes" / str(m["name"])
                folder.mkdir(parents=True, exist_ok=True)
                out[path] = str(folder.resolve())
                self.auto_mounts.append(f"{path} -> {folder}")
        return out, sorted(m.get("mountPath") for m in declared
                           if m.get("mountPath") and m["mountPath"].rstrip("/") not in out)

    def _map_paths(self, text: str, extra: dict[str, str]) -> str:
        for path, local in sorted({**self.mounts, **extra}.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(r"(?<![\w.-])" + re.escape(path) + r"(?=/|$|[^\w.-])", lambda _m: local, text)
        return text

    # ------------------------------------------------------------ status
    def trials(self) -> list[Any]:
        """Recorded trials Katib would list (not the interrupted ones a retry replaces), in creation order."""
        return [t for t in self.store.study.get_trials(deepcopy=False) if katib_state(t) not in (None, INTERRUPTED)]

    def outcomes(self) -> list[ks.TrialOutcome]:
        return [outcome(t) for t in self.trials()]

    def end_condition(self) -> tuple[str, str, str] | None:
        return ks.end_condition(self.outcomes(), self.objective, self.max_trials, self.exp.max_failed_trial_count,
                                suggestions_ended=self.exhausted and not self.active)

    # ------------------------------------------------------------ proposing and launching
    def _trial_name(self) -> str:
        taken = {t.user_attrs.get("name") for t in self.store.study.get_trials(deepcopy=False)}
        while True:
            name = f"{self.exp.name}-" + "".join(random.choices(TRIAL_NAME_ALPHABET, k=8))
            if name not in taken:
                return name

    def katib_add_count(self) -> int:
        """How many trials Katib's ReconcileTrials asks the suggestion for now: free slots, capped by
        maxTrialCount minus the completed trials, where (unlike the end condition) MetricsUnavailable
        trials do not count as completed, so Katib can start more than maxTrialCount trials."""
        c = ks.counts(self.outcomes())
        completed = c[ks.SUCCEEDED] + c[ks.FAILED] + c[ks.KILLED] + c[ks.EARLY_STOPPED]
        parallel = self.exp.parallel_trial_count
        required = parallel if self.max_trials is None else min(self.max_trials - completed, parallel)
        return max(0, required - len(self.active))

    def _seen_by_hyperband(self) -> list[SeenTrial]:
        out = []
        for t in self.trials():
            state = katib_state(t)
            out.append(SeenTrial(start=float(t.user_attrs.get("start") or 0.0), succeeded=state == ks.SUCCEEDED,
                                 objective=str(t.user_attrs.get("objective", mc.UNAVAILABLE)),
                                 assignments=dict(t.user_attrs.get("assignments") or {})))
        return out

    def propose_hyperband(self, request: int):
        """Katib's hyperband service asked for `request` trials: the proposals, or WAIT when Katib's
        call fails and is retried later (the service raised, or answered a different number)."""
        hb = self.algorithm.hyperband
        try:
            state, values = hb.suggest(request, self._seen_by_hyperband())
        except NotReady as exc:
            self._hyperband_refusal = f"the hyperband service raised ({exc})"
            return WAIT
        if len(values) != request:
            if not values:
                self._hyperband_refusal = (
                    "hyperband has no more trials to suggest (its schedule is over) and Katib v0.19 never ends an "
                    "Experiment for that (ExperimentSuggestionEndReached is never set)")
            else:
                self._hyperband_refusal = (
                    f"the controller asked the hyperband service for {request} trial(s) and it answered "
                    f"{len(values)}: Katib rejects the answer (\"The response contains unexpected trials\") and "
                    "asks again, forever, because the service sizes its rung from the request "
                    "(current_request_number), not from its schedule")
            return WAIT
        hb.state = state
        self.store.study.set_user_attr("hyperband_state", dict(vars(state)))
        out = []
        for strings in values:
            out.append((self._ask_fixed(strings), strings, {"rung": f"s={state.current_s},i={state.current_i}",
                                                           "raw": strings}))
        return out

    def propose_service(self, request: int) -> list:
        """Our suggestion service (asha) asked, as Katib's controller asks it, for `request` trials."""
        from pipeline.suggestion.request import TrialRecord

        records = [TrialRecord(str(t.user_attrs.get("name")), dict(t.user_attrs.get("assignments") or {}),
                               katib_state(t), list(t.user_attrs.get("observation") or []))
                   for t in self.trials()]
        driver = self.algorithm.service
        values = driver.suggest(records, request)
        self.store.study.set_user_attr("suggestion_state", driver.state())
        return [(self._ask_fixed(strings), strings, {"rung": driver.rung(strings), "raw": strings})
                for strings in values]

    def _queued_retry(self) -> bool:
        from optuna.trial import TrialState
        return bool(self.store.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def propose(self):
        """(optuna trial, Katib strings, extra attrs), WAIT, or None when the algorithm is exhausted."""
        from optuna.trial import TrialState

        alg, study = self.algorithm, self.store.study
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial = study.ask(alg.distributions)  # Optuna pops the queued retry first
            getattr(alg.sampler, "raw", {}).pop(trial.number, None)
            a = trial.user_attrs
            return trial, dict(a["assignments"]), {"rung": a.get("rung"), "retry_of": a.get("name"), "raw": a.get("raw")}
        if alg.grid_size is not None and len(self.trials()) >= alg.grid_size:  # running ones included
            return None
        trial = study.ask(alg.distributions)
        raw = getattr(alg.sampler, "raw", {}).pop(trial.number, None) or dict(trial.params)
        strings = {p.name: render_value(raw[p.name], alg.style) for p in alg.params}
        return trial, strings, {"raw": strings}

    def _ask_fixed(self, strings: dict[str, str]):
        study = self.store.study
        params = {p.name: samplers.to_optuna(strings[p.name], self.algorithm.distributions[p.name])
                  for p in self.algorithm.params}
        study.enqueue_trial(params, skip_if_exists=False)
        trial = study.ask(self.algorithm.distributions)
        getattr(self.algorithm.sampler, "raw", {}).pop(trial.number, None)
        return trial

    def launch(self, trial, strings: dict[str, str], extra: dict[str, Any]) -> None:
        name = self._trial_name()
        trial_dir = self.out / "trials" / name
        extra_mounts: dict[str, str] = {}
        metrics_path = None
        if self.cspec.kind == "File":
            # Katib mounts an emptyDir at the metrics file's folder; here, a folder per trial.
            folder = os.path.dirname(self.cspec.path)
            extra_mounts[folder] = str((trial_dir / "metrics").resolve())
            metrics_path = Path(extra_mounts[folder]) / os.path.basename(self.cspec.path)
        argv = trial_argv(self.exp, strings, self.algorithm.style, trial_name=name,
                          map_word=lambda w: self._map_paths(w, extra_mounts)) + list(self.options.trial_args)
        env = dict(os.environ)
        for e in self.exp.primary_container().get("env") or []:
            if "value" in e:
                env[e["name"]] = self._map_paths(str(e["value"]), extra_mounts)
        env.setdefault("PYTHONUNBUFFERED", "1")
        stop = None
        if self.medianstop is not None:
            value = threshold(self._succeeded_reports(), self.medianstop)
            if value is not None:
                stop = StopCheck(value, self.objective.maximize, self.medianstop.start_step)
        deadline = time.time() + float(self.deadline_s) if self.deadline_s else None
        run = TrialRun(name=name, number=trial.number, optuna_trial=trial, assignments=strings, argv=argv, env=env,
                       log_path=trial_dir / "trial.log", metrics_path=metrics_path, deadline=deadline,
                       backoff_limit=self.backoff_limit, stop=stop)
        for key, value in {"name": name, "assignments": strings, "katib_state": ks.RUNNING, "argv": argv,
                           "start": time.time(), "early_stopping_rule": stop.value if stop else None,
                           **{k: v for k, v in extra.items() if v is not None}}.items():
            trial.set_user_attr(key, value)
        self.store.mark_running(trial)
        self.active[trial.number] = run
        self.runner.start(run)

    def _succeeded_reports(self) -> list[list[float]]:
        return [t.user_attrs.get("reports") or [] for t in self.trials() if katib_state(t) == ks.SUCCEEDED]

    # ------------------------------------------------------------ finishing
    def finish(self, run: TrialRun) -> None:
        """Judge one ended trial like Katib's trial controller, then record it."""
        from optuna.trial import TrialState

        if run.metrics_path is not None:
            try:
                text = run.metrics_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                text = ""
        else:
            # Only the last attempt (pod) reports to Katib's DB: its output starts at log_offset.
            text = ""
            if run.log_path.exists():
                with open(run.log_path, "rb") as f:
                    f.seek(run.log_offset)
                    text = f.read().decode("utf-8", errors="replace")
        reason, message = "", ""
        try:
            metrics = mc.collect(self.cspec, text)
        except mc.MetricsFormatError as exc:
            metrics = mc.collect(self.cspec, "")
            message = f"metrics collector failed: {exc}"
        reports = [v for v in (mc.go_parse_float(log.value) for log in self.cspec.parse(text)
                               if log.name == self.cspec.objective) if v is not None] if metrics.available else []
        if run.early_stopped:
            state, reason = ks.EARLY_STOPPED, "TrialEarlyStopped"
            message = f"objective {self.cspec.objective} best-so-far is worse than the median-stop rule " \
                      f"{run.stop.value} at report {self.medianstop.start_step}"
        elif run.killed:
            state, reason, message = ks.KILLED, "TrialKilled", "the experiment ended while the trial was running"
        elif run.timed_out:
            state, reason = ks.FAILED, "TrialFailed. Job reason: DeadlineExceeded"
            message = f"Trial has failed. Job message: Job was active longer than specified deadline " \
                      f"({self.deadline_s}s activeDeadlineSeconds)"
        elif run.returncode != 0:
            state, reason = ks.FAILED, "TrialFailed. Job reason: BackoffLimitExceeded"
            message = f"Trial has failed. Job message: Job has reached the specified backoff limit " \
                      f"(exit code {run.returncode} after {run.attempt} attempt(s))"
        elif metrics.available:
            state, reason, message = ks.SUCCEEDED, "TrialSucceeded", "Trial has succeeded"
        else:
            state, reason = ks.METRICS_UNAVAILABLE, "MetricsUnavailable"
            message = (f"Metrics are not available: the objective metric {self.cspec.objective!r} never appeared "
                       f"in the trial's {'metrics file' if run.metrics_path else 'output'} "
                       f"({'filters ' + repr(list(self.cspec.filters)) if self.cspec.filters else 'default filter'})")
        observed = state in (ks.SUCCEEDED, ks.EARLY_STOPPED) and metrics.available
        t = run.optuna_trial
        attrs = {"katib_state": state, "reason": reason, "message": message, "end": time.time(),
                 "attempts": run.attempt, "returncode": run.returncode,
                 "observation": metrics.observation.to_katib() if observed else None,
                 "objective": metrics.objective if observed else mc.UNAVAILABLE,
                 "reports": reports}
        for key, value in attrs.items():
            t.set_user_attr(key, value)
        for step, value in enumerate(reports, start=1):
            if math.isfinite(value):
                t.report(value, step)
        if observed and metrics.objective_float is not None and not math.isnan(metrics.objective_float):
            self.store.study.tell(t, metrics.objective_float)
        else:
            if observed and metrics.objective_float is None:
                self.warnings.append(f"{run.name}: objective {self.cspec.objective} was reported as "
                                     f"{metrics.objective!r}, not a number; Katib records it the same way "
                                     "(and may even pick this trial as the best)")
            self.store.study.tell(t, state=TrialState.FAIL)

    def handle_exit(self, run: TrialRun, attempt: int) -> None:
        if run.number not in self.active or attempt != run.attempt:
            return
        failed = run.returncode != 0 and not run.early_stopped and not run.killed and not run.timed_out
        if failed and run.attempt <= run.backoff_limit and self.signal is None:
            # The Job controller starts a new pod until backoffLimit is reached.
            self.runner.start(run)
            return
        del self.active[run.number]
        self.finish(run)

    # ------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        self.store = Store(self.storage_url, self.exp.name, self.algorithm.sampler, self.objective.maximize, self.out)
        try:
            self._check_restart()
            self.store.claim(self.exp.spec, self.exp.source)
            saved = self.store.study.user_attrs.get("hyperband_state")
            if self.algorithm.hyperband is not None and saved and "current_s" in saved:
                self.algorithm.hyperband.state = HyperbandState(**saved)
            if self.algorithm.service is not None and self.store.study.user_attrs.get("suggestion_state"):
                self.algorithm.service.restore(self.store.study.user_attrs["suggestion_state"])
            self.start_time = self.store.study.user_attrs.get("startTime") or _now()
            self.store.study.set_user_attr("startTime", self.start_time)
            self._say_notes()
            end = self._loop()
            if end is not None:
                self.store.study.set_user_attr("end", list(end))
            self.status = outputs.write(self._snapshot(end))
            for w in self.warnings if self.options.progress else ():
                click.echo(f"warning: {w}", err=True)
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
            raise UserError(f"{self.exp.source}: this Experiment already ended ({prev_end[1]}) in {self.out}; "
                            f"{why}. Use another --out, or set resumePolicy: LongRunning to continue it")
        self.store.study.set_user_attr("end", None)

    def _loop(self) -> tuple[str, str, str] | None:
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
                want = self.katib_add_count()
                if self.algorithm.hyperband is not None or self.algorithm.service is not None:
                    while want > 0 and self._queued_retry():
                        self.launch(*self.propose())  # an interrupted trial comes back first
                        want -= 1
                    if want > 0 and self.algorithm.service is not None:
                        for proposal in self.propose_service(want):
                            self.launch(*proposal)
                    elif want > 0:
                        proposals = self.propose_hyperband(want)
                        for proposal in proposals if proposals != WAIT else ():
                            self.launch(*proposal)
                else:
                    if want > 0 and hasattr(self.algorithm.sampler, "start_batch"):
                        self.algorithm.sampler.start_batch(want)
                    for _ in range(want):
                        if self.exhausted:
                            break
                        proposal = self.propose()
                        if proposal == WAIT:
                            break
                        if proposal is None:
                            self.exhausted = True
                            break
                        self.launch(*proposal)
                bar.update(self.outcomes(), self.objective, running=len(self.active))
                end = self.end_condition()
                if end is not None:
                    break
                if not self.active:
                    if self.exhausted:
                        continue
                    if self.algorithm.hyperband is not None:
                        # Nothing runs, nothing will change: Katib would retry the same call forever.
                        self.hang = (f"Katib v0.19 would stay Running here forever: {self._hyperband_refusal}. "
                                     f"This is a known Katib bug ({KATIB_ISSUES}); the local run stops instead "
                                     f"of inventing more rungs. {self.algorithm.hyperband.describe()}")
                        self.warnings.append(self.hang)
                        break
                    raise RuntimeError("no trial is running and the algorithm proposes none")  # a bug if reached
                self._wait_events()
            if end is not None and self.active:
                # Katib does not stop the trials still running when an Experiment ends: they run to
                # their own end and their outcomes still enter the status (and may become the best);
                # only the end condition stays. The local run waits for them the same way.
                if self.options.progress:
                    click.echo(f"  {self.exp.name}: {end[1]}; {len(self.active)} trial(s) still running finish "
                               "first, as on Katib (it does not stop them)", err=True)
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

    def _snapshot(self, end: tuple[str, str, str] | None) -> outputs.Snapshot:
        return outputs.Snapshot(experiment=self.exp, trials=self.trials(), study=self.store.study, out=self.out,
                                start_time=self.start_time, end=end, storage_url=self.storage_url,
                                notes=self.algorithm.notes, trial_args=list(self.options.trial_args),
                                metric_names=self.cspec.metric_names, signal=self.signal,
                                html=self.options.report, hang=self.hang)

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
            if run.deadline and now >= run.deadline and not run.timed_out:
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

    def _say_notes(self) -> None:
        if not self.options.progress:
            return
        lines = [f"katib-digits tune: {self.exp.source} -> {self.out}  (storage {self.storage_url})"]
        lines += [f"  local vs Katib: {n}" for n in self.notes]
        if self.medianstop:
            lines.append(f"  early stopping: medianstop, Katib's rule (min_trials_required="
                         f"{self.medianstop.min_trials_required}, start_step={self.medianstop.start_step})")
        for mount in self.auto_mounts:
            lines.append(f"  volume (writable, not given with --mount): {mount}")
        if self.unmapped:
            lines.append(f"  warning: volume mount(s) {', '.join(self.unmapped)} not mapped; pass "
                         f"--mount {self.unmapped[0]}=LOCAL_DIR if the trial reads from them")
        if self.options.trial_args:
            lines.append(f"  appended to every trial command (local only): {' '.join(self.options.trial_args)}")
        click.echo("\n".join(lines), err=True)


def run_experiment(experiment: str | Path | dict[str, Any] | Experiment, out_dir: str | Path | None = None,
                   mounts: dict[str, str] | None = None, storage: str | None = None,
                   max_trial_count: int | None = None, parallel_trial_count: int | None = None,
                   trial_args: Iterable[str] = (), progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Run an Experiment locally; returns the experiment.json object (Katib's shape).
    `experiment`: a YAML path, a dict or an Experiment; it is validated like `lint` does.
    `report=False` skips report.html (plotly), e.g. in tests.
    SIGINT/SIGTERM: the outputs are written, then SystemExit(128 + signal) is raised, so a
    caller (a pipeline step, a script) stops too instead of taking a half-run for a result."""
    dry = dry_run(experiment, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args,
                  progress, report)
    if dry.signal is not None:
        raise SystemExit(128 + dry.signal)
    return dry.status


def dry_run(experiment, out_dir=None, mounts=None, storage=None, max_trial_count=None, parallel_trial_count=None,
            trial_args=(), progress=True, report=True, max_failed_trial_count=None) -> DryRun:
    """Build and run the DryRun (the object, for callers that read its trials)."""
    from pipeline import lint

    exp = experiment if isinstance(experiment, Experiment) else lint.load(experiment)
    budgeted = with_budget(exp, max_trial_count, parallel_trial_count, max_failed_trial_count)
    out = Path(out_dir) if out_dir else Path("runs") / exp.name
    options = LocalOptions(out=out, mounts=dict(mounts or {}), storage=storage, trial_args=tuple(trial_args),
                           progress=progress, report=report)
    dry = DryRun(budgeted.experiment, options, notes=budgeted.notes)
    dry.run()
    return dry
