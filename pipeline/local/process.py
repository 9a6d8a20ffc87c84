"""One trial as a local process group: start it, pump its output to the log,
apply the early-stopping check to each objective report as the collector
sidecar does, and put its end on the controller's event queue."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.katib import collector as mc
from pipeline.katib.medianstop import StopCheck
from pipeline.katib.trial_rules import TrialEnd

KILL_GRACE_S = 5.0


def _preexec() -> None:
    # Own process group (we stop the whole trial, children included) and die
    # with the dry-run even when it is SIGKILLed (Linux PR_SET_PDEATHSIG).
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class TrialRun:
    name: str
    number: int
    optuna_trial: Any
    assignments: dict[str, str]  # parameter name -> Katib string
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    metrics_path: Path | None
    deadline: float | None
    stop: StopCheck | None
    start: float = field(default_factory=time.time)
    attempt: int = 0
    proc: subprocess.Popen | None = None
    reports: list[float] = field(default_factory=list)
    early_stopped: bool = False
    timed_out: bool = False
    killed: bool = False
    returncode: int | None = None
    log_offset: int = 0  # where this attempt's output starts in log_path (each pod has its own log)

    def end(self) -> TrialEnd:
        """How the attempt that just ended ended, for Katib's rules (pipeline.katib.trial_rules)."""
        return TrialEnd(
            returncode=self.returncode,
            attempts=self.attempt,
            early_stopped=self.early_stopped,
            killed=self.killed,
            timed_out=self.timed_out,
        )

    def collected_text(self) -> str:
        """What Katib's collector reads of the last attempt: its metrics file (File collector), or
        its output (StdOut: only the last pod reports to Katib's DB, so from log_offset on)."""
        if self.metrics_path is not None:
            try:
                return self.metrics_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode("utf-8", errors="replace")


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the trial's process group, SIGKILL what is left after `grace`."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of an exited leader
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
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
        if run.attempt > 1:
            # A retried Job starts a new pod: a fresh metrics emptyDir and a fresh sidecar. The failed
            # pod's sidecar never reported (no "completed" marker: it exits before ReportObservationLog),
            # so only the last attempt's metric lines reach Katib's DB.
            run.reports = []
            if run.stop is not None:
                run.stop = StopCheck(run.stop.value, run.stop.maximize, run.stop.start_step_total)
            if run.metrics_path is not None and run.metrics_path.exists():
                run.metrics_path.unlink()
        run.log_offset = run.log_path.stat().st_size if run.log_path.exists() else 0
        log = open(run.log_path, "ab")  # noqa: SIM115 - the pump thread owns it from here and closes it
        try:
            run.proc = subprocess.Popen(
                run.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=run.env,
                preexec_fn=_preexec,
            )
        except OSError as exc:
            log.write(f"katib-digits: cannot start the trial command {run.argv[0]!r}: {exc}\n".encode())
            log.close()
            run.returncode = 127
            self.events.put(("exit", run, run.attempt))
            return
        threading.Thread(target=self._pump, args=(run, run.proc, log, run.attempt), daemon=True).start()
        if run.stop is not None and run.metrics_path is not None:
            args = (run, run.proc, run.stop, run.metrics_path)
            threading.Thread(target=self._tail_file, args=args, daemon=True).start()

    def _pump(self, run: TrialRun, proc: subprocess.Popen, log: BinaryIO, attempt: int) -> None:
        # Blocking reads, one thread per trial: no polling, no parent-side parsing
        # unless early stopping needs it (the StdOut collector reads the same bytes).
        assert proc.stdout is not None  # started with stdout=PIPE
        watch = run.stop if run.metrics_path is None else None
        with log:
            for raw in proc.stdout:
                log.write(raw)
                if watch is not None and not watch.done:
                    log.flush()
                    self._check(run, raw.decode("utf-8", "replace").rstrip("\r\n"))
        proc.stdout.close()
        run.returncode = proc.wait()
        self.events.put(("exit", run, attempt))

    def _tail_file(self, run: TrialRun, proc: subprocess.Popen, stop: StopCheck, metrics_path: Path) -> None:
        pos, buf = 0, b""
        while not stop.done:
            try:
                with open(metrics_path, "rb") as f:
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
        if run.stop is None or run.proc is None:
            return  # only a started trial with early stopping is watched
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
                kill_group(run.proc)
                return
