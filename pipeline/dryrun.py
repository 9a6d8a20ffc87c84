"""`katib-digits tune EXPERIMENT.yaml`: run a Katib Experiment on this machine.

Same trial command (substituted and word-split like Katib), same metric
parsing (pipeline.collector), same early stopping (pipeline.medianstop), same
end conditions and the same status object, with Optuna as the search engine
and its RDB storage as the experiment's memory (resume, cooperation, report).
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import queue
import random
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import click

from pipeline import collector as mc
from pipeline.errors import UserError
from pipeline.medianstop import MedianStopSettings, StopCheck, threshold
from pipeline.render import container_of, render_trial_spec, render_value, shell_words

# Katib trial conditions (the experiment's status lists are built from them).
SUCCEEDED, FAILED, EARLY_STOPPED, UNAVAILABLE, KILLED, RUNNING = (
    "Succeeded", "Failed", "EarlyStopped", "MetricsUnavailable", "Killed", "Running")
INTERRUPTED = "Interrupted"  # local only: the dry-run stopped; re-run to retry it
COMPLETED_STATES = (SUCCEEDED, FAILED, EARLY_STOPPED, UNAVAILABLE, KILLED)
FAILED_STATES = (FAILED, UNAVAILABLE)
LOCK_ATTR = "katib_digits_lock"
INTERRUPTED_ANNOTATION = "katib-digits/interrupted-by-signal"
LOCK_STALE_S = 90.0
HEARTBEAT_S = 20.0
KILL_GRACE_S = 5.0
DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes Job default: a failing pod is retried this many times


def _sqlite_fast(engine) -> None:
    """WAL journal + normal sync: a commit per trial attribute costs a fraction of a
    millisecond instead of an fsync, and readers (a report, a second run) never block."""
    from sqlalchemy import event

    def on_connect(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before the listener get the pragmas too


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_spec(path_or_exp: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The defaulted Experiment and a label for messages; validated by the linter when present."""
    from pipeline import spec as specmod

    if isinstance(path_or_exp, dict):
        exp = specmod.with_defaults(path_or_exp)
        return exp, (exp.get("metadata") or {}).get("name", "<experiment>")
    try:
        from pipeline.lint import check_experiment  # helper A's: load + lint, UserError if invalid
    except ImportError:
        check_experiment = None
    if check_experiment is not None:
        exp = check_experiment(str(path_or_exp))
    else:
        exp = specmod.with_defaults(specmod.load_experiment(path_or_exp))
    return exp, str(path_or_exp)


# ---------------------------------------------------------------- one trial process
def _preexec() -> None:
    # Own process group (we stop the whole trial, children included) and die
    # with the dry-run even when it is SIGKILLed (Linux PR_SET_PDEATHSIG).
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class TrialRun:
    name: str
    number: int
    optuna_trial: Any
    assignments: dict[str, str]          # parameter name -> Katib string
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    metrics_path: Path | None
    deadline: float | None
    backoff_limit: int
    stop: StopCheck | None
    extra_attrs: dict[str, Any] = field(default_factory=dict)
    start: float = field(default_factory=time.time)
    attempt: int = 0
    proc: subprocess.Popen | None = None
    reports: list[float] = field(default_factory=list)
    early_stopped: bool = False
    timed_out: bool = False
    killed: bool = False
    returncode: int | None = None


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the trial's process group, SIGKILL what is left after `grace`."""
    if proc.poll() is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of an exited leader
        except (ProcessLookupError, PermissionError):
            pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Runner:
    """Starts trial processes and turns their ends into events on one queue."""

    def __init__(self, cspec: mc.CollectorSpec, events: queue.Queue):
        self.cspec = cspec
        self.events = events
        self.patterns = mc.compile_filters(cspec.filters)

    def start(self, run: TrialRun) -> None:
        run.attempt += 1
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        if run.metrics_path is not None and run.attempt == 1:
            run.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(run.log_path, "ab")
        try:
            run.proc = subprocess.Popen(run.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=run.env, preexec_fn=_preexec)
        except OSError as exc:
            log.write(f"katib-digits: cannot start the trial command {run.argv[0]!r}: {exc}\n".encode())
            log.close()
            run.returncode = 127
            self.events.put(("exit", run, run.attempt))
            return
        threading.Thread(target=self._pump, args=(run, log, run.attempt), daemon=True).start()
        if run.stop is not None and run.metrics_path is not None:
            threading.Thread(target=self._tail_file, args=(run, run.proc), daemon=True).start()

    def _pump(self, run: TrialRun, log, attempt: int) -> None:
        # Blocking reads, one thread per trial: no polling, no parent-side parsing
        # unless early stopping needs it (the StdOut collector reads the same bytes).
        proc = run.proc
        watch = run.stop is not None and run.metrics_path is None
        with log:
            for raw in proc.stdout:
                log.write(raw)
                if watch and not run.stop.done:
                    log.flush()
                    self._check(run, raw.decode("utf-8", "replace").rstrip("\r\n"))
        proc.stdout.close()
        run.returncode = proc.wait()
        self.events.put(("exit", run, attempt))

    def _tail_file(self, run: TrialRun, proc: subprocess.Popen) -> None:
        pos, buf = 0, b""
        while not run.stop.done:
            try:
                with open(run.metrics_path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            if chunk:
                pos += len(chunk)
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._check(run, line.decode("utf-8", "replace"))
            elif proc.poll() is not None:
                return
            else:
                time.sleep(0.2)

    def _check(self, run: TrialRun, line: str) -> None:
        try:
            logs = self.cspec.parse_line(line, self.patterns)
        except mc.MetricsFormatError:
            return
        for log in logs:
            if log.name != self.cspec.objective:
                continue
            value = mc.go_parse_float(log.value)
            if value is None:
                continue  # Katib's collector would crash here; the trial is judged at the end
            run.reports.append(value)
            if run.stop.report(value):
                run.early_stopped = True
                _kill_group(run.proc)
                return


# ---------------------------------------------------------------- the experiment
class DryRun:
    def __init__(self, exp: dict[str, Any], label: str, out_dir: Path, mounts: dict[str, str],
                 storage: str | None, trial_args: Iterable[str], progress: bool):
        from pipeline import samplers

        self.exp = exp
        self.label = label
        self.spec = exp["spec"]
        self.name = exp["metadata"]["name"]
        self.out = out_dir
        self.trial_args = list(trial_args)
        self.progress = progress
        self.maximize = self.spec["objective"]["type"] == "maximize"
        self.goal = self.spec["objective"].get("goal")
        self.goal = float(self.goal) if self.goal not in (None, "") else None
        self.max_trials = int(self.spec.get("maxTrialCount") or 0) or None
        self.max_failed = self.spec.get("maxFailedTrialCount")
        self.max_failed = int(self.max_failed) if self.max_failed not in (None, "") else None
        self.parallel = int(self.spec.get("parallelTrialCount", 3))
        self.cspec = mc.CollectorSpec.from_experiment(exp)
        self.algorithm = samplers.build_algorithm(exp, self.parallel)
        if self.max_trials is None and self.algorithm.grid_size is None and self.algorithm.hyperband is None:
            self.notes_extra = ["maxTrialCount is not set: the experiment runs until its goal is reached "
                                "(or forever); stop it with Ctrl-C"]
        else:
            self.notes_extra = []
        if self.algorithm.grid_size is not None and self.max_trials and self.max_trials > self.algorithm.grid_size:
            raise UserError(f"{label}: spec.maxTrialCount: Max Trial Count: {self.max_trials} > all possible search "
                            f"combinations: {self.algorithm.grid_size} (Katib's grid rejects it too)")
        self.medianstop = MedianStopSettings.from_experiment(exp)
        template = self.spec["trialTemplate"]
        ts = template["trialSpec"]
        self.container_name = template["primaryContainerName"]
        container_of(ts, self.container_name)
        job = ts.get("spec") or {}
        self.deadline_s = job.get("activeDeadlineSeconds")
        self.backoff_limit = int(job.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)) if ts.get("kind") == "Job" else 0
        self.mounts = self._mounts(mounts)
        self.storage_url = storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        self.events: queue.Queue = queue.Queue()
        self.runner = Runner(self.cspec, self.events)
        self.active: dict[int, TrialRun] = {}
        self.retry: list[dict[str, Any]] = []
        self.exhausted = False
        self.signal: int | None = None
        self.warnings: list[str] = []

    # ------------------------------------------------------------ set-up
    def _mounts(self, mounts: dict[str, str]) -> dict[str, str]:
        container = container_of(self.spec["trialTemplate"]["trialSpec"], self.container_name)
        declared = {m.get("mountPath") for m in container.get("volumeMounts") or []}
        out = {}
        for path, local in mounts.items():
            if not path.startswith("/"):
                raise UserError(f"--mount {path}={local}: the container path must be absolute")
            if not Path(local).is_dir():
                raise UserError(f"--mount {path}={local}: {local} is not a directory")
            out[path.rstrip("/") or "/"] = str(Path(local).resolve())
        self.unmapped = sorted(d for d in declared if d and d.rstrip("/") not in out)
        return out

    def _map_paths(self, text: str, extra: dict[str, str]) -> str:
        import re

        for path, local in sorted({**self.mounts, **extra}.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(r"(?<![\w.-])" + re.escape(path) + r"(?=/|$|[^\w.-])", lambda _m: local, text)
        return text

    def open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            storage = optuna.storages.RDBStorage(self.storage_url, heartbeat_interval=None,
                                                 engine_kwargs={"connect_args": {"timeout": 30}}
                                                 if self.storage_url.startswith("sqlite") else {})
        except Exception as exc:  # noqa: BLE001 - any driver error is a bad --storage
            raise UserError(f"--storage {self.storage_url}: cannot open: {exc}") from None
        if self.storage_url.startswith("sqlite"):
            _sqlite_fast(storage.engine)
        self.study = optuna.create_study(storage=storage, study_name=self.name, load_if_exists=True,
                                         sampler=self.algorithm.sampler,
                                         direction="maximize" if self.maximize else "minimize")
        self._acquire_lock()
        for key, value in (("spec", self.spec),):
            prev = self.study.user_attrs.get(key)
            if prev is not None and json.dumps(prev.get("parameters"), sort_keys=True) != json.dumps(
                    self.spec.get("parameters"), sort_keys=True):
                raise UserError(f"{self.label}: the storage already holds study {self.name!r} with a different "
                                "search space; use another --out/--storage or delete the old study")
            self.study.set_user_attr(key, value)

    def _acquire_lock(self) -> None:
        """One dry-run per study: a second one refuses (shared storages are fine for other studies)."""
        import fcntl

        self._lockfile = open(self.out / ".lock", "w")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{self.out}: another dry-run is using this output folder; wait for it or use "
                            "--out") from None
        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        held = self.study.user_attrs.get(LOCK_ATTR)
        if held and held.get("pid") != me["pid"] and self._lock_alive(held):
            raise UserError(f"study {self.name!r} in {self.storage_url} is being run by another dry-run "
                            f"(pid {held['pid']} on {held['host']}); two runs of one Experiment would overrun "
                            "its trial budgets. Wait for it to finish, or use another --storage/--out")
        self.study.set_user_attr(LOCK_ATTR, me)
        time.sleep(0.05)
        if self.study.user_attrs.get(LOCK_ATTR, {}).get("pid") != me["pid"]:
            raise UserError(f"study {self.name!r} was claimed by another dry-run at the same moment; retry later")
        self._lock = me
        self._last_beat = time.time()

    @staticmethod
    def _lock_alive(held: dict[str, Any]) -> bool:
        if held.get("host") == socket.gethostname():
            try:
                os.kill(int(held["pid"]), 0)
                return True
            except (ProcessLookupError, ValueError):
                return False
            except PermissionError:
                return True
        return time.time() - float(held.get("time", 0)) < LOCK_STALE_S

    def _heartbeat(self) -> None:
        if time.time() - self._last_beat > HEARTBEAT_S:
            self._lock["time"] = self._last_beat = time.time()
            self.study.set_user_attr(LOCK_ATTR, self._lock)

    def _release_lock(self) -> None:
        try:
            if self.study.user_attrs.get(LOCK_ATTR, {}).get("pid") == os.getpid():
                self.study.set_user_attr(LOCK_ATTR, None)
        finally:
            self._lockfile.close()

    def recover(self) -> None:
        """Trials left RUNNING by an interrupted or killed dry-run: mark them and retry them."""
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study._storage.set_trial_user_attr(t._trial_id, "katib_state", INTERRUPTED)
            self.study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            a = t.user_attrs
            if a.get("katib_state") == INTERRUPTED and a.get("name") not in retried and a.get("assignments"):
                self.retry.append({"assignments": a["assignments"], "rung": a.get("rung"), "from": a.get("name")})
        if self.algorithm.hyperband is not None:
            saved = self.study.user_attrs.get("hyperband_state")
            if saved:
                for k, v in saved.items():
                    setattr(self.algorithm.hyperband.state, k, v)

    # ------------------------------------------------------------ status
    def trials(self) -> list[Any]:
        return [t for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get("katib_state") not in (None, INTERRUPTED)]

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in COMPLETED_STATES}
        for t in self.trials():
            s = t.user_attrs["katib_state"]
            if s in c:
                c[s] += 1
        return c

    def best(self) -> tuple[Any | None, bool]:
        """Katib's updateTrialsSummary: (best trial, goal reached)."""
        best, best_value, reached = None, None, False
        for t in sorted(self.trials(), key=lambda t: t.number):
            value_str = t.user_attrs.get("objective", mc.UNAVAILABLE)
            if t.user_attrs.get("observation") is None or value_str == mc.UNAVAILABLE:
                continue
            value = mc.go_parse_float(value_str)
            if value is None:
                best = t  # Katib: a non-numeric objective makes that trial the best (latest wins)
                continue
            if best_value is None:
                best, best_value = t, value
            if (value > best_value) if self.maximize else (value < best_value):
                best, best_value = t, value
            if self.goal is not None and ((best_value >= self.goal) if self.maximize else (best_value <= self.goal)):
                reached = True
        return best, reached

    def end_condition(self) -> tuple[str, str, str] | None:
        """(type, reason, message) when the experiment ends now, checked in Katib's order."""
        _, reached = self.best()
        if reached:
            return SUCCEEDED, "ExperimentGoalReached", "Experiment has succeeded because Objective goal has reached"
        c = self.counts()
        failed = c[FAILED] + c[UNAVAILABLE]
        if self.max_failed is not None and failed != 0 and failed >= self.max_failed:
            return FAILED, "ExperimentFailed", "Experiment has failed because max failed count has reached"
        if self.max_trials is not None and sum(c.values()) >= self.max_trials:
            return SUCCEEDED, "ExperimentMaxTrialsReached", "Experiment has succeeded because max trial count has reached"
        if self.exhausted and not self.active:
            return (SUCCEEDED, "ExperimentSuggestionEndReached",
                    "Experiment has succeeded because suggestion service has reached the end")
        return None

    # ------------------------------------------------------------ proposing and launching
    def _trial_name(self) -> str:
        taken = {t.user_attrs.get("name") for t in self.study.get_trials(deepcopy=False)}
        while True:
            name = f"{self.name}-" + "".join(random.choices(string.ascii_lowercase, k=8))
            if name not in taken:
                return name

    def _finished_for_hyperband(self):
        out = []
        for t in self.trials():
            if t.user_attrs.get("rung") is None or t.user_attrs.get("katib_state") not in COMPLETED_STATES:
                continue
            out.append((t.user_attrs["rung"], t.user_attrs["raw"], mc.go_parse_float(t.user_attrs.get("objective", ""))
                        if t.user_attrs.get("katib_state") in (SUCCEEDED, EARLY_STOPPED) else None))
        return out

    def propose(self):
        """(optuna trial, Katib strings, extra attrs), WAIT, or None when the algorithm is exhausted."""
        from pipeline import samplers

        alg = self.algorithm
        if self.retry:
            r = self.retry.pop(0)
            trial = self._ask_fixed(r["assignments"])
            return trial, dict(r["assignments"]), {"rung": r.get("rung"), "retry_of": r.get("from"),
                                                   "raw": r["assignments"]}
        if alg.hyperband is not None:
            values = alg.hyperband.propose(self._finished_for_hyperband())
            self.study.set_user_attr("hyperband_state", {k: v for k, v in vars(alg.hyperband.state).items()})
            if values is None or values == samplers.WAIT:
                return values
            rung = values.pop("_rung")
            strings = {k: render_value(v, alg.style) for k, v in values.items()}
            return self._ask_fixed(strings), strings, {"rung": rung, "raw": strings}
        if alg.grid_size is not None:
            started = len([t for t in self.study.get_trials(deepcopy=False)
                           if t.user_attrs.get("katib_state") != INTERRUPTED])
            if started >= alg.grid_size:
                return None
        trial = self.study.ask(alg.distributions)
        raw = getattr(alg.sampler, "raw", {}).pop(trial.number, None) or dict(trial.params)
        strings = {p.name: render_value(raw[p.name], alg.style) for p in alg.params}
        return trial, strings, {"raw": strings}

    def _ask_fixed(self, strings: dict[str, str]):
        from pipeline import samplers

        params = {}
        for p in self.algorithm.params:
            dist = self.algorithm.distributions[p.name]
            params[p.name] = samplers.to_optuna(strings[p.name], dist)
        self.study.enqueue_trial(params, skip_if_exists=False)
        trial = self.study.ask(self.algorithm.distributions)
        getattr(self.algorithm.sampler, "raw", {}).pop(trial.number, None)
        return trial

    def launch(self, trial, strings: dict[str, str], extra: dict[str, Any]) -> None:
        name = self._trial_name()
        spec = render_trial_spec(self.exp, strings, self.algorithm.style, trial_name=name)
        container = container_of(spec, self.container_name)
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        if not words:
            raise UserError(f"{self.label}: the primary container has no command/args; the dry-run cannot run an "
                            "image's entrypoint")
        trial_dir = self.out / "trials" / name
        extra_mounts: dict[str, str] = {}
        metrics_path = None
        if self.cspec.kind == "File":
            # Katib mounts an emptyDir at the metrics file's folder; here, a folder per trial.
            folder = os.path.dirname(self.cspec.path)
            extra_mounts[folder] = str((trial_dir / "metrics").resolve())
            metrics_path = Path(extra_mounts[folder]) / os.path.basename(self.cspec.path)
        argv = shell_words([self._map_paths(w, extra_mounts) for w in words]) + self.trial_args
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = dict(os.environ)
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = self._map_paths(str(e["value"]), extra_mounts)
        env.setdefault("PYTHONUNBUFFERED", "1")
        stop = None
        if self.medianstop is not None:
            value = threshold(self._succeeded_reports(), self.medianstop)
            if value is not None:
                stop = StopCheck(value, self.maximize, self.medianstop.start_step)
        deadline = time.time() + float(self.deadline_s) if self.deadline_s else None
        run = TrialRun(name=name, number=trial.number, optuna_trial=trial, assignments=strings, argv=argv, env=env,
                       log_path=trial_dir / "trial.log", metrics_path=metrics_path, deadline=deadline,
                       backoff_limit=self.backoff_limit, stop=stop, extra_attrs=extra)
        for key, value in {"name": name, "assignments": strings, "katib_state": RUNNING, "argv": argv,
                           "start": time.time(), "early_stopping_rule": stop.value if stop else None,
                           **{k: v for k, v in extra.items() if v is not None}}.items():
            trial.set_user_attr(key, value)
        self.active[trial.number] = run
        self.runner.start(run)

    def _succeeded_reports(self) -> list[list[float]]:
        return [t.user_attrs.get("reports") or [] for t in self.trials()
                if t.user_attrs.get("katib_state") == SUCCEEDED]

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
            text = run.log_path.read_text(encoding="utf-8", errors="replace") if run.log_path.exists() else ""
        reason, message = "", ""
        try:
            metrics = mc.collect(self.cspec, text)
        except mc.MetricsFormatError as exc:
            metrics = mc.collect(self.cspec, "")
            message = f"metrics collector failed: {exc}"
        reports = [v for v in (mc.go_parse_float(l.value) for l in self.cspec.parse(text)
                               if l.name == self.cspec.objective) if v is not None] if metrics.available else []
        ok = run.returncode == 0
        if run.early_stopped:
            state, reason = EARLY_STOPPED, "TrialEarlyStopped"
            message = f"objective {self.cspec.objective} best-so-far is worse than the median-stop rule " \
                      f"{run.stop.value} at report {self.medianstop.start_step}"
        elif run.killed:
            state, reason, message = KILLED, "TrialKilled", "the experiment ended while the trial was running"
        elif run.timed_out:
            state, reason = FAILED, "TrialFailed. Job reason: DeadlineExceeded"
            message = f"Trial has failed. Job message: Job was active longer than specified deadline " \
                      f"({self.deadline_s}s activeDeadlineSeconds)"
        elif not ok:
            state, reason = FAILED, "TrialFailed. Job reason: BackoffLimitExceeded"
            message = f"Trial has failed. Job message: Job has reached the specified backoff limit " \
                      f"(exit code {run.returncode} after {run.attempt} attempt(s))"
        elif metrics.available:
            state, reason, message = SUCCEEDED, "TrialSucceeded", "Trial has succeeded"
        else:
            state, reason = UNAVAILABLE, "MetricsUnavailable"
            message = (f"Metrics are not available: the objective metric {self.cspec.objective!r} never appeared "
                       f"in the trial's {'metrics file' if run.metrics_path else 'output'} "
                       f"({'filters ' + repr(list(self.cspec.filters)) if self.cspec.filters else 'default filter'})")
        observed = state in (SUCCEEDED, EARLY_STOPPED) and metrics.available
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
            self.study.tell(t, metrics.objective_float)
        else:
            if observed and metrics.objective_float is None:
                self.warnings.append(f"{run.name}: objective {self.cspec.objective} was reported as "
                                     f"{metrics.objective!r}, not a number; Katib records it the same way "
                                     "(and may even pick this trial as the best)")
            self.study.tell(t, state=TrialState.FAIL)

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

    def kill_all(self, state_flag: str) -> None:
        for run in list(self.active.values()):
            setattr(run, state_flag, True)
            if run.proc is not None:
                _kill_group(run.proc)

    # ------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        from pipeline import report, samplers

        self.open_study()
        self.recover()
        self.start_time = self.study.user_attrs.get("startTime") or _now()
        self.study.set_user_attr("startTime", self.start_time)
        self._say_notes()
        bar = report.Progress(self, enabled=self.progress)
        end: tuple[str, str, str] | None = None
        old = self._install_signals()
        try:
            while True:
                self._heartbeat()
                if self.signal is not None:
                    break
                end = self.end_condition()
                if end is not None:
                    break
                completed = sum(self.counts().values())
                while (len(self.active) < self.parallel and not self.exhausted
                       and (self.max_trials is None or completed + len(self.active) < self.max_trials)):
                    proposal = self.propose()
                    if proposal == samplers.WAIT:
                        break
                    if proposal is None:
                        self.exhausted = True
                        break
                    self.launch(*proposal)
                bar.update()
                end = self.end_condition()
                if end is not None:
                    break
                if not self.active:
                    if self.exhausted:
                        continue
                    raise RuntimeError("no trial is running and the algorithm proposes none")  # a bug if reached
                self._wait_events()
            if end is not None and self.active:
                # Goal reached or failed budget spent: the trials still running are stopped (Killed).
                self.kill_all("killed")
                self._drain()
        finally:
            self._restore_signals(old)
            if self.signal is not None or sys.exc_info()[0] is not None:
                self._interrupt()
            bar.close()
        self.status = report.write_outputs(self, end, html=getattr(self, "make_report", True))
        self._release_lock()
        return self.status

    def _wait_events(self) -> None:
        timeout = 5.0
        deadlines = [r.deadline for r in self.active.values() if r.deadline]
        if deadlines:
            timeout = max(0.05, min(timeout, min(deadlines) - time.time()))
        try:
            ev = self.events.get(timeout=timeout)
            self._handle(ev)
            while True:
                self._handle(self.events.get_nowait())
        except queue.Empty:
            pass
        now = time.time()
        for run in list(self.active.values()):
            if run.deadline and now >= run.deadline and not run.timed_out:
                run.timed_out = True
                _kill_group(run.proc)

    def _handle(self, ev) -> None:
        kind = ev[0]
        if kind == "exit":
            self.handle_exit(ev[1], ev[2])

    def _drain(self) -> None:
        while self.active:
            try:
                self._handle(self.events.get(timeout=KILL_GRACE_S * 3))
            except queue.Empty:
                break

    def _interrupt(self) -> None:
        """Stop every running trial; they are recorded Interrupted and retried on the next run."""
        from optuna.trial import TrialState

        for run in list(self.active.values()):
            run.killed = True
            if run.proc is not None:
                _kill_group(run.proc)
        for run in list(self.active.values()):
            t = run.optuna_trial
            t.set_user_attr("katib_state", INTERRUPTED)
            t.set_user_attr("end", time.time())
            self.study.tell(t, state=TrialState.FAIL)
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
        if not self.progress:
            return
        lines = [f"katib-digits tune: {self.label} -> {self.out}  (storage {self.storage_url})"]
        lines += [f"  local vs Katib: {n}" for n in self.algorithm.notes + self.notes_extra]
        if self.medianstop:
            lines.append(f"  early stopping: medianstop, Katib's rule (min_trials_required="
                         f"{self.medianstop.min_trials_required}, start_step={self.medianstop.start_step})")
        if self.unmapped:
            lines.append(f"  warning: volume mount(s) {', '.join(self.unmapped)} not mapped; pass "
                         f"--mount {self.unmapped[0]}=LOCAL_DIR if the trial reads from them")
        if self.trial_args:
            lines.append(f"  appended to every trial command (local only): {' '.join(self.trial_args)}")
        click.echo("\n".join(lines), err=True)


def run_experiment(path_or_exp: str | Path | dict[str, Any], out_dir: str | Path | None = None,
                   mounts: dict[str, str] | None = None, storage: str | None = None,
                   max_trial_count: int | None = None, parallel_trial_count: int | None = None,
                   trial_args: Iterable[str] = (), progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Run an Experiment locally; returns the experiment.json object (Katib's shape).
    `report=False` skips report.html (plotly), e.g. in tests.
    SIGINT/SIGTERM: the outputs are written, then SystemExit(128 + signal) is raised, so a
    caller (a pipeline step, a script) stops too instead of taking a half-run for a result."""
    dry = _dry_run(path_or_exp, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args,
                   progress, report)
    if dry.signal is not None:
        raise SystemExit(128 + dry.signal)
    return dry.status


def _dry_run(path_or_exp, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args,
             progress, report) -> "DryRun":
    exp, label = load_spec(path_or_exp)
    exp = _override(exp, max_trial_count, parallel_trial_count)
    out = Path(out_dir) if out_dir else Path("runs") / exp["metadata"]["name"]
    dry = DryRun(exp, label, out, dict(mounts or {}), storage, trial_args, progress)
    dry.make_report = report
    dry.run()
    return dry


def _override(exp: dict[str, Any], max_trial_count: int | None, parallel_trial_count: int | None) -> dict[str, Any]:
    import copy

    exp = copy.deepcopy(exp)
    spec = exp["spec"]
    if max_trial_count is not None:
        if max_trial_count <= 0:
            raise UserError("--max-trial-count must be > 0")
        spec["maxTrialCount"] = max_trial_count
    if parallel_trial_count is not None:
        if parallel_trial_count <= 0:
            raise UserError("--parallel-trial-count must be > 0")
        spec["parallelTrialCount"] = parallel_trial_count
    mt = spec.get("maxTrialCount")
    if mt and spec.get("maxFailedTrialCount") not in (None, "") and int(spec["maxFailedTrialCount"]) > int(mt):
        spec["maxFailedTrialCount"] = int(mt)  # Katib's validator: maxFailed <= maxTrialCount
    # parallelTrialCount is left as written: the loop never runs more trials than the budget left
    # (hyperband's parallelTrialCount check must still see the spec's value).
    return exp


# ---------------------------------------------------------------- smoke check (lint --run)
def smoke_check(path: str, mounts: dict[str, str], trial_args: list[str]) -> None:
    """Render one trial from the spec, run it through the same runner and
    collector, and raise UserError when the objective metric is not collected."""
    import tempfile

    exp, label = load_spec(path)
    exp = _override(exp, 1, 1)
    exp["spec"]["maxFailedTrialCount"] = 1
    exp["spec"].pop("earlyStopping", None)
    with tempfile.TemporaryDirectory(prefix="katib-digits-smoke-") as tmp:
        dry = _dry_run(exp, Path(tmp) / "run", mounts, None, None, None, trial_args, False, False)
        done = dry.trials()
        trial = {"name": "-"} if not done else {"name": done[0].user_attrs["name"],
                                                "state": done[0].user_attrs["katib_state"],
                                                "message": done[0].user_attrs.get("message"),
                                                "objective": done[0].user_attrs.get("objective")}
        log_path = Path(tmp) / "run" / "trials" / trial["name"] / "trial.log"
        tail = ""
        if log_path.exists():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        objective = exp["spec"]["objective"]["objectiveMetricName"]
        state = trial.get("state")
        if state == SUCCEEDED:
            value = trial.get("objective", "")
            if mc.go_parse_float(value) is None:
                raise UserError(f"{label}: the trial's objective {objective!r} was collected as {value!r}, not a "
                                "number (the default filter reads `nan` as an empty value); Katib would record it "
                                f"the same way. Last lines of the trial:\n{tail}")
            return
        if state == UNAVAILABLE:
            raise UserError(f"{label}: one trial ran but its objective metric {objective!r} was never collected "
                            f"({trial.get('message')}). Katib would mark it MetricsUnavailable. Print lines like "
                            f"`{objective}=0.98` (name=value) to stdout. Last lines of the trial:\n{tail}")
        raise UserError(f"{label}: the trial {state}: {trial.get('message')}. Last lines of the trial:\n{tail}")


# ---------------------------------------------------------------- CLI
def _parse_mounts(values: Iterable[str]) -> dict[str, str]:
    out = {}
    for v in values:
        path, sep, local = v.partition("=")
        if not sep or not path or not local:
            raise UserError(f"--mount {v}: expected CONTAINER_PATH=LOCAL_DIR, e.g. --mount /data=data/sample")
        out[path] = local
    return out


@click.command("tune")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: runs/<experiment-name>/).")
@click.option("--mount", "mounts", multiple=True, metavar="PATH=DIR",
              help="Map a container volume mount path to a local folder (repeatable).")
@click.option("--storage", default=None, help="Optuna storage URL (default: SQLite in the output folder).")
@click.option("--max-trial-count", type=int, default=None, help="Override spec.maxTrialCount (smoke runs).")
@click.option("--parallel-trial-count", type=int, default=None, help="Override spec.parallelTrialCount.")
@click.option("--trial-arg", "trial_args", multiple=True, metavar="ARG",
              help="Append ARG to every trial command (repeatable), e.g. --trial-arg=--epochs=1.")
@click.option("--no-progress", is_flag=True, help="No progress bar or notes on stderr.")
@click.option("--no-report", is_flag=True, help="Skip report.html (plotly); experiment.json and trials.csv are written.")
@click.pass_context
def tune_command(ctx, experiment, out_dir, mounts, storage, max_trial_count, parallel_trial_count, trial_args,
                 no_progress, no_report):
    """Run EXPERIMENT (a Katib v1beta1 Experiment YAML) locally with Optuna,
    with Katib's trial command, metrics collection, early stopping and end
    conditions. Re-running the same command resumes. A leading `python` or
    `python3` in the trial command runs this interpreter (sys.executable).

    Exit status: 0 Succeeded, 1 Failed, 2 bad input, 130/143 interrupted.
    """
    status = run_experiment(experiment, out_dir, _parse_mounts(mounts), storage, max_trial_count,
                            parallel_trial_count, trial_args, progress=not no_progress, report=not no_report)
    cond = status["status"]["conditions"][-1]
    interrupted = int(status["metadata"]["annotations"].get(INTERRUPTED_ANNOTATION, 0))
    click.echo(f"{status['metadata']['name']}: {cond['type']} ({cond['reason']}): {cond['message']}", err=True)
    best = status["status"].get("currentOptimalTrial") or {}
    if best.get("bestTrialName"):
        click.echo(f"best trial {best['bestTrialName']}: "
                   + " ".join(f"{a['name']}={a['value']}" for a in best["parameterAssignments"])
                   + " | " + " ".join(f"{m['name']}={m['latest']}" for m in best["observation"]["metrics"]),
                   err=True)
    if interrupted:
        ctx.exit(128 + interrupted)
    ctx.exit(0 if cond["type"] == SUCCEEDED else 1)
