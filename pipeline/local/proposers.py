"""Where a dry-run's new trials come from, behind one interface (`Proposer`), one
implementation per family of Katib suggestion services:

- `SamplerProposer`: an Optuna sampler (random, tpe, multivariate-tpe, grid, cmaes,
  sobol, bayesianoptimization; pipeline.local.samplers), asked once per trial;
- `HyperbandProposer`: Katib v0.19's hyperband service and the controller's check
  of its answer (pipeline.local.hyperband), which can refuse and leave Katib waiting;
- `ServiceProposer`: this project's own suggestion service (asha), in-process, as
  Katib's suggestion controller calls it (pipeline.local.suggestion).

The controller asks `propose(count)` when Katib's ReconcileTrials would ask for
`count` trials and launches each proposal as it comes; it does not know which
family it talks to. Every proposal is a trial asked from the study (its record),
with the parameters as the Katib strings the trial command is rendered from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.katib import collector as mc, status as ks
from pipeline.katib.render import render_value
from pipeline.local import samplers
from pipeline.local.hyperband import KATIB_ISSUES, HyperbandState, NotReady, SeenTrial
from pipeline.local.study import Store, katib_state


@dataclass(frozen=True)
class Proposal:
    """One new trial: its study record, its parameters as Katib strings, and what is recorded with it."""

    trial: Any  # the optuna Trial asked for it
    assignments: dict[str, str]  # parameter name -> Katib string
    attrs: dict[str, Any]  # extra trial attributes (raw, rung, retry_of); None values are not recorded


class Proposer(ABC):
    """A search algorithm as Katib's controller sees it: asked for trials, told nothing else (each
    reads the finished trials from the study, as a Katib service reads the trial list)."""

    exhausted: bool = False  # it will never propose again (grid run out): ExperimentSuggestionEndReached

    def __init__(self, algorithm: samplers.Algorithm, store: Store):
        self.algorithm = algorithm
        self.store = store

    def resume(self) -> None:  # noqa: B027 - an optional hook, not abstract: a no-op by default
        """Take back the state a previous run of this study saved (none by default)."""

    @abstractmethod
    def propose(self, count: int) -> Iterator[Proposal]:
        """At most `count` new trials (fewer when the algorithm has none now), made lazily: the caller
        launches each before the next is made. A trial an interrupted run left queued comes first."""

    def stall(self) -> str | None:
        """Nothing runs and nothing was proposed: why Katib would wait forever here, or None when that
        cannot happen on Katib (then it is a bug of the local run)."""
        return None

    # -- shared by the families -------------------------------------------------------------
    def _queued_retry(self) -> Proposal | None:
        """The trial an interrupted run left queued (Optuna's heartbeat retry), with its parameters."""
        from optuna.trial import TrialState

        study = self.store.study
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return None
        trial = study.ask(self.algorithm.distributions)  # Optuna pops the queued retry first
        self._drop_raw(trial)
        a = trial.user_attrs
        return Proposal(
            trial, dict(a["assignments"]), {"rung": a.get("rung"), "retry_of": a.get("name"), "raw": a.get("raw")}
        )

    def _fixed(self, strings: dict[str, str], attrs: dict[str, Any]) -> Proposal:
        """A trial with parameters a service chose, recorded in the study."""
        alg, study = self.algorithm, self.store.study
        params = {p.name: samplers.to_optuna(strings[p.name], alg.distributions[p.name]) for p in alg.params}
        study.enqueue_trial(params, skip_if_exists=False)
        trial = study.ask(alg.distributions)
        self._drop_raw(trial)
        return Proposal(trial, strings, attrs)

    def _drop_raw(self, trial) -> dict[str, Any] | None:
        """The sampler's own values for `trial` (a library-backed sampler keeps them), forgotten."""
        return getattr(self.algorithm.sampler, "raw", {}).pop(trial.number, None)


class SamplerProposer(Proposer):
    """An Optuna sampler: one ask per trial, the batch size announced first as Katib's services get it."""

    def propose(self, count: int) -> Iterator[Proposal]:
        alg, study = self.algorithm, self.store.study
        if count > 0 and hasattr(alg.sampler, "start_batch"):
            alg.sampler.start_batch(count)
        for _ in range(count):
            if self.exhausted:
                return
            retry = self._queued_retry()
            if retry is not None:
                yield retry
                continue
            if alg.grid_size is not None and len(self.store.katib_trials()) >= alg.grid_size:  # running included
                self.exhausted = True
                return
            trial = study.ask(alg.distributions)
            raw = self._drop_raw(trial) or dict(trial.params)
            strings = {p.name: render_value(raw[p.name], alg.style) for p in alg.params}
            yield Proposal(trial, strings, {"raw": strings})


class BatchProposer(Proposer):
    """A suggestion service asked once for the whole batch, as Katib's controller asks it."""

    def propose(self, count: int) -> Iterator[Proposal]:
        while count > 0:
            retry = self._queued_retry()  # an interrupted trial comes back first
            if retry is None:
                break
            yield retry
            count -= 1
        if count > 0:
            yield from self._answer(count)

    @abstractmethod
    def _answer(self, request: int) -> list[Proposal]:
        """The service's answer to a request for `request` trials, all recorded before any is launched."""


class HyperbandProposer(BatchProposer):
    """Katib v0.19's hyperband service, and its controller's rule: an answer with a different number of
    trials than asked (or a raised error) is refused, and Katib asks again when trials change."""

    def __init__(self, algorithm: samplers.Algorithm, store: Store):
        super().__init__(algorithm, store)
        assert algorithm.hyperband is not None  # proposer_for picks this class for hyperband only
        self.hyperband = algorithm.hyperband
        self.refusal = "the hyperband service gave no answer"  # why the last call was refused

    def resume(self) -> None:
        saved = self.store.study.user_attrs.get("hyperband_state")
        if saved and "current_s" in saved:
            self.hyperband.state = HyperbandState(**saved)

    def _seen(self) -> list[SeenTrial]:
        out = []
        for t in self.store.katib_trials():
            out.append(
                SeenTrial(
                    start=float(t.user_attrs.get("start") or 0.0),
                    succeeded=katib_state(t) == ks.SUCCEEDED,
                    objective=str(t.user_attrs.get("objective", mc.UNAVAILABLE)),
                    assignments=dict(t.user_attrs.get("assignments") or {}),
                )
            )
        return out

    def _answer(self, request: int) -> list[Proposal]:
        """The service asked for `request` trials: the proposals, or none when Katib refuses the answer."""
        hb = self.hyperband
        try:
            state, values = hb.suggest(request, self._seen())
        except NotReady as exc:
            self.refusal = f"the hyperband service raised ({exc})"
            return []
        if len(values) != request:
            if not values:
                self.refusal = (
                    "hyperband has no more trials to suggest (its schedule is over) and Katib v0.19 never ends an "
                    "Experiment for that (ExperimentSuggestionEndReached is never set)"
                )
            else:
                self.refusal = (
                    f"the controller asked the hyperband service for {request} trial(s) and it answered "
                    f'{len(values)}: Katib rejects the answer ("The response contains unexpected trials") and '
                    "asks again, forever, because the service sizes its rung from the request "
                    "(current_request_number), not from its schedule"
                )
            return []
        hb.state = state
        self.store.study.set_user_attr("hyperband_state", dict(vars(state)))
        rung = f"s={state.current_s},i={state.current_i}"
        return [self._fixed(strings, {"rung": rung, "raw": strings}) for strings in values]

    def stall(self) -> str:
        # Nothing runs, nothing will change: Katib would retry the same call forever.
        return (
            f"Katib v0.19 would stay Running here forever: {self.refusal}. "
            f"This is a known Katib bug ({KATIB_ISSUES}); the local run stops instead "
            f"of inventing more rungs. {self.hyperband.describe()}"
        )


class ServiceProposer(BatchProposer):
    """One of this project's suggestion services (asha), asked as Katib's controller asks it."""

    def __init__(self, algorithm: samplers.Algorithm, store: Store):
        super().__init__(algorithm, store)
        self.driver = algorithm.service

    def resume(self) -> None:
        saved = self.store.study.user_attrs.get("suggestion_state")
        if saved:
            self.driver.restore(saved)

    def _answer(self, request: int) -> list[Proposal]:
        from pipeline.suggestion.request import TrialRecord

        records = [
            TrialRecord(
                str(t.user_attrs.get("name")),
                dict(t.user_attrs.get("assignments") or {}),
                katib_state(t) or "",  # never None: katib_trials lists started trials only
                list(t.user_attrs.get("observation") or []),
            )
            for t in self.store.katib_trials()
        ]
        values = self.driver.suggest(records, request)
        self.store.study.set_user_attr("suggestion_state", self.driver.state())
        return [self._fixed(strings, {"rung": self.driver.rung(strings), "raw": strings}) for strings in values]


def proposer_for(algorithm: samplers.Algorithm, store: Store) -> Proposer:
    """The proposer of the algorithm's family."""
    if algorithm.hyperband is not None:
        return HyperbandProposer(algorithm, store)
    if algorithm.service is not None:
        return ServiceProposer(algorithm, store)
    return SamplerProposer(algorithm, store)
