"""Katib v0.19's hyperband suggestion service as a state machine, and what its
controller does with the answers (`pkg/suggestion/v1beta1/hyperband/service.py`,
`suggestionclient.go`, `experiment_controller.go` ReconcileTrials), written again
from their rules. Pure: no sampling here (pipeline.local.hyperband samples).

- The service's state is the algorithm settings it writes back after an answer
  (eta, s_max, r_l, r, n, current_s, current_i, evaluating_trials); the controller
  keeps it only when it accepts the answer.
- Every call carries `current_request_number` R and the service overwrites its
  bracket size n with it. With no rung under evaluation it answers a master rung
  of R new configurations at resource int(r); otherwise it promotes the best
  ceil(ceil(R * eta^-i) / eta) of the last `evaluating_trials` trials at
  int(r * eta^i), and raises while one of those has not succeeded.
- The controller accepts an answer only when it holds exactly R trials
  ("The response contains unexpected trials" otherwise) and asks again at the
  next reconcile. After the first rung R is the number of free slots, so a
  promotion answer (about R / eta) is refused and Katib retries forever with
  nothing running: kubeflow/katib#1168, kubeflow/katib#1366. When the schedule is
  over the service answers nothing, which is refused too: v0.19 never ends an
  Experiment because its suggestions ran out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

KATIB_ISSUES = "kubeflow/katib#1168, kubeflow/katib#1366"
ISSUE_LINKS = "https://github.com/kubeflow/katib/issues/1168, https://github.com/kubeflow/katib/issues/1366"


@dataclass(frozen=True)
class HyperbandState:
    """The service's algorithm settings between calls (Katib's HyperBandParam)."""

    eta: float
    r_l: float
    resource: str
    s_max: int
    b_l: float
    current_s: int
    current_i: int
    n: int
    r: float
    evaluating: int = 0

    @classmethod
    def initial(cls, r_l: float, eta: float, resource: str) -> HyperbandState:
        eta = float(eta) if eta > 0 else 3.0
        s_max = int(math.log(r_l) / math.log(eta))
        return cls(
            eta=eta,
            r_l=float(r_l),
            resource=resource,
            s_max=s_max,
            b_l=(s_max + 1) * float(r_l),
            current_s=s_max,
            current_i=0,
            n=int(math.ceil(float(s_max + 1) * (float(eta**s_max) / float(s_max + 1)))),
            r=float(r_l) * eta ** (-s_max),
        )

    def next_bracket(self) -> HyperbandState:
        s = self.current_s - 1
        if s < 0:
            return replace(self, current_s=s, current_i=0)
        return replace(
            self,
            current_s=s,
            current_i=0,
            n=int(math.ceil(float(self.s_max + 1) * (float(self.eta**s) / float(s + 1)))),
            r=self.r_l * self.eta ** (-s),
        )


@dataclass(frozen=True)
class Answer:
    """One GetSuggestions answer, by count: `kind` master (new configurations), child (the
    best `count` of the last `promote_from` trials) or none (the schedule is over)."""

    kind: str
    count: int
    resource: int
    promote_from: int
    state: HyperbandState  # the settings after this answer, kept only if it is accepted


def answer(state: HyperbandState, request: int) -> Answer:
    """What the service answers to a request for `request` trials (the caller checks, for a
    child answer, that the last `promote_from` trials have all succeeded: else it raises)."""
    if state.current_s < 0:
        return Answer("none", 0, 0, 0, state)
    st = replace(state, n=request)
    if st.evaluating == 0:
        kind, count, resource, promote_from = "master", st.n, int(st.r), 0
    else:
        n_i = math.ceil(st.n * st.eta ** (-st.current_i))
        count = int(math.ceil(n_i / st.eta))
        promote_from = st.evaluating
        st = replace(st, current_i=st.current_i + 1)
        if st.current_i > st.current_s:
            st = st.next_bracket()
        kind, resource = "child", int(st.r * st.eta**st.current_i)
        count = min(count, promote_from)
    st = replace(st, evaluating=count if st.current_i < st.current_s else 0)
    if st.evaluating == 0:
        st = st.next_bracket()
    # The settings travel as strings and are read back with int(float(...)): r loses its fraction.
    st = replace(st, r=float(int(st.r)), n=int(st.n))
    return Answer(kind, count, resource, promote_from, st)


@dataclass(frozen=True)
class KatibRun:
    """How Katib v0.19 runs a hyperband Experiment when every trial succeeds and trials end
    in the order they started."""

    resources: tuple[int, ...]  # the resource of each trial, in creation order
    stalled: bool  # Katib stays Running with nothing to run
    reason: str = ""


def katib_run(r_l: float, eta: float, parallel: int, max_trials: int | None, limit: int = 1000) -> KatibRun:
    """Katib's controller and hyperband service, by counts: each trial's end triggers a
    reconcile that asks for min(maxTrialCount - completed, parallel) - running trials."""
    state = HyperbandState.initial(r_l, eta, "")
    resources: list[int] = []
    running: list[int] = []  # indexes of running trials, oldest first
    completed = 0
    while len(resources) < limit:
        if max_trials is not None and completed >= max_trials:
            return KatibRun(tuple(resources), False)
        required = parallel if max_trials is None else min(max_trials - completed, parallel)
        request = required - len(running)
        if request > 0:
            a = answer(state, request)
            last = list(range(len(resources)))[-a.promote_from :] if a.promote_from else []
            ready = a.kind != "child" or not any(i in running for i in last)
            if ready and a.count == request:
                state = a.state
                for _ in range(a.count):
                    running.append(len(resources))
                    resources.append(a.resource)
                continue
            if not running:
                why = (
                    "the schedule is over and v0.19 never ends an Experiment for that"
                    if a.kind == "none"
                    else f"the controller asks for {request} trial(s), the service answers {a.count}"
                )
                return KatibRun(tuple(resources), True, why)
        if not running:
            return KatibRun(tuple(resources), True, "nothing to run")
        running.pop(0)
        completed += 1
    return KatibRun(tuple(resources), False)
