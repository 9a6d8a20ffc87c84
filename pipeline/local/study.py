"""The dry-run's memory: one Optuna study in RDB storage (SQLite by default).

Resume and failure handling are Optuna's own: every running trial records
storage heartbeats; a trial whose dry-run died is failed (at once when its
process is gone from this machine, by `fail_stale_trials` after the grace
period otherwise) and `RetryHeartbeatStaleTrialCallback` queues it again, so
the next run retries it. One dry-run per output folder (a `filelock`) and per
study (its runner is recorded on the study and checked for life).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock, Timeout
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import UserError
from pipeline.katib.collector import UNAVAILABLE
from pipeline.katib.status import RUNNING, TrialOutcome
from pipeline.katib.trial_rules import TrialEnd, Verdict

INTERRUPTED = "Interrupted"  # local only: the dry-run stopped; the next run retries it
HEARTBEAT_S = 20
GRACE_S = 60  # a trial silent this long belongs to a dead dry-run
RUNNER_ATTR = "katib_digits_runner"
# Katib's trial names: `<experiment>-<8 random characters>` (utilrand.String(8) in suggestionclient.go).
TRIAL_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery utilrand's alphanums


def katib_state(trial: FrozenTrial) -> str | None:
    """The Katib condition a recorded trial ended in, INTERRUPTED for one a dry-run left behind."""
    if trial.state == TrialState.WAITING:
        return None  # queued for a retry, not started
    state = trial.user_attrs.get("katib_state")
    if state == RUNNING and trial.state == TrialState.FAIL:
        return INTERRUPTED  # failed by the heartbeat check: its dry-run died
    return state


def outcome(trial: FrozenTrial) -> TrialOutcome:
    """A recorded trial as Katib's status functions read it."""
    a = trial.user_attrs
    return TrialOutcome(
        name=a.get("name", ""),
        state=katib_state(trial) or "",
        objective=a.get("objective", UNAVAILABLE),
        observation=a.get("observation"),
        assignments=a.get("assignments"),
    )


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


@contextlib.contextmanager
def _experimental_ok() -> Iterator[None]:
    """Optuna marks heartbeats and their callbacks experimental; we rely on them knowingly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(runner: dict[str, Any] | None) -> bool:
    """Whether a trial's dry-run still runs: its process on this machine; another machine's is left
    to the heartbeat check (fail_stale_trials)."""
    if not runner:
        return False
    if runner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(runner["pid"]), 0)
        return True
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True


class Store:
    """The study of one Experiment, claimed by this process until `release`."""

    def __init__(self, url: str, name: str, sampler: optuna.samplers.BaseSampler, maximize: bool, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(out / ".lock")
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise UserError(f"{out}: another dry-run is using this output folder; wait for it or use --out") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Optuna warns that heartbeats are meant for study.optimize; we record them ourselves per trial.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        sqlite = url.startswith("sqlite")
        try:
            with _experimental_ok():
                self.retry = RetryHeartbeatStaleTrialCallback()
                self.storage = RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=self.retry,
                    engine_kwargs={"connect_args": {"timeout": 30}} if sqlite else {},
                )
        except Exception as exc:  # noqa: BLE001 - any driver error is a bad --storage
            self.lock.release()
            raise UserError(f"--storage {url}: cannot open: {exc}") from None
        if sqlite:
            _sqlite_fast(self.storage.engine)
        self.url, self.name = url, name
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=name,
            load_if_exists=True,
            sampler=sampler,
            direction="maximize" if maximize else "minimize",
        )
        self.study_id = self.storage.get_study_id_from_name(name)
        self._beats: dict[int, float] = {}

    def claim(self, spec: dict[str, Any], label: str) -> None:
        """Refuse a study another live dry-run holds or one with another search space; then
        fail (and queue again) what a dead one left running, and take the study."""
        prev = self.study.user_attrs.get("spec")
        if prev is not None and json.dumps(prev.get("parameters"), sort_keys=True) != json.dumps(
            spec.get("parameters"), sort_keys=True
        ):
            raise UserError(
                f"{label}: the storage already holds study {self.name!r} with a different search "
                "space; use another --out/--storage or delete the old study"
            )
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not _alive(t.user_attrs.get("runner")):
                self._fail_and_retry(t.number)
        with _experimental_ok():
            fail_stale_trials(self.study)  # another machine's dead runs, once their heartbeats are stale
        held = self.study.user_attrs.get(RUNNER_ATTR)
        if held and held.get("pid") != os.getpid():
            if held.get("host") == socket.gethostname():
                alive = _alive(held)
            else:  # another machine's run: alive while its trials' heartbeats are fresh
                alive = bool(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if alive:
                raise UserError(
                    f"study {self.name!r} in {self.url} is being run by another dry-run (pid "
                    f"{held['pid']} on {held['host']}); two runs of one Experiment would overrun its "
                    "trial budgets. Wait for it to finish, or use another --storage/--out"
                )
        self.study.set_user_attr("spec", spec)
        self.study.set_user_attr(RUNNER_ATTR, _me())

    def katib_trials(self) -> list[FrozenTrial]:
        """Recorded trials Katib would list (not the interrupted ones a retry replaces), in creation order."""
        return [t for t in self.study.get_trials(deepcopy=False) if katib_state(t) not in (None, INTERRUPTED)]

    def new_trial_name(self, experiment: str) -> str:
        """A name as Katib gives a trial, that no trial of the study has."""
        taken = {t.user_attrs.get("name") for t in self.study.get_trials(deepcopy=False)}
        while True:
            name = f"{experiment}-" + "".join(random.choices(TRIAL_NAME_ALPHABET, k=8))
            if name not in taken:
                return name

    def record_end(self, trial: optuna.Trial, verdict: Verdict, end: TrialEnd) -> None:
        """A judged trial: its Katib condition and observation as attributes, the objective's reports
        as intermediate values, and the result (a trial whose objective is not a number is FAIL for
        Optuna, whatever Katib's condition)."""
        attrs = {
            "katib_state": verdict.state,
            "reason": verdict.reason,
            "message": verdict.message,
            "end": time.time(),
            "attempts": end.attempts,
            "returncode": end.returncode,
            "observation": verdict.observation,
            "objective": verdict.objective,
            "reports": verdict.reports,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for step, value in enumerate(verdict.reports, start=1):
            if math.isfinite(value):
                trial.report(value, step)
        if verdict.value is not None:
            self.study.tell(trial, verdict.value)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def mark_running(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("runner", _me())
        self.heartbeat([trial.number], force=True)

    def heartbeat(self, numbers: list[int], force: bool = False) -> None:
        now = time.time()
        for number in numbers:
            if force or now - self._beats.get(number, 0) >= HEARTBEAT_S:
                self.storage.record_heartbeat(self.trial_id(number))
                self._beats[number] = now

    def interrupt(self, trial: optuna.Trial) -> None:
        """A trial this run stopped unfinished: record it and queue it for the next run."""
        trial.set_user_attr("katib_state", INTERRUPTED)
        trial.set_user_attr("end", time.time())
        self._fail_and_retry(trial.number)

    def _fail_and_retry(self, number: int) -> None:
        trial_id = self.trial_id(number)
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another process finished it first
        self.retry(self.study, self.storage.get_trial(trial_id))

    def release(self) -> None:
        try:
            if (self.study.user_attrs.get(RUNNER_ATTR) or {}).get("pid") == os.getpid():
                self.study.set_user_attr(RUNNER_ATTR, None)
        finally:
            self.lock.release()
