"""Katib v0.19's hyperband suggestion service, run locally, bugs included
(`pkg/suggestion/v1beta1/hyperband/service.py`, written again here from its rules).

How the service works on Katib v0.19, and what this module reproduces:

- Its state is the algorithm settings it writes back after every answer (eta,
  s_max, r_l, r, n, current_s, current_i, evaluating_trials). The controller keeps
  that state only when the answer is accepted.
- Each call carries `current_request_number` R (how many trials the controller
  wants now) and the service overwrites its bracket size n with R.
- With no rung being evaluated it samples a master rung of R random configurations
  at resource int(r): ONE uniform draw over all dimensions (Katib's parsing_util):
  doubles uniform whatever `distribution` says, ints rounded (half to even),
  discrete values the nearest list entry to a uniform draw between the list's
  min and max, categorical values the argmax of a uniform one-hot vector.
- Otherwise it promotes the best ceil(ceil(R * eta^-i) / eta) of the last
  `evaluating_trials` trials (by start time) at resource int(r * eta^i); it
  raises (Katib retries later) while one of those is not Succeeded.
- The controller (suggestionclient.go) accepts an answer only when it holds
  exactly R trials: otherwise "The response contains unexpected trials" and a
  retry. After the first rung R is the number of free slots, so the service's
  ceil(R / eta) never matches and Katib retries forever (kubeflow/katib#1168,
  #1366). When the schedule is over the service answers nothing, which never
  matches either: v0.19 never ends an Experiment for "suggestions exhausted".

`suggest` is pure: it returns the new state with the trials, and the caller keeps
the state only when Katib would accept the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.katib.algorithms import HyperbandPlan
from pipeline.katib.experiment import Param
from pipeline.katib.hyperband import KATIB_ISSUES, HyperbandState, answer

__all__ = ["KATIB_ISSUES", "HyperbandState", "NotReady", "SeenTrial", "Hyperband"]


class NotReady(Exception):
    """The service raised: a trial of the rung it would promote from is not Succeeded."""


@dataclass(frozen=True)
class SeenTrial:
    """What the service is told about one trial."""

    start: float
    succeeded: bool
    objective: str  # the value the metricStrategy picks, a Katib string
    assignments: dict[str, str]


class Hyperband:
    def __init__(self, params: list[Param], maximize: bool, plan: HyperbandPlan, seed: int | None = None):
        self.params = params
        self.maximize = maximize
        self.plan = plan
        self.state = HyperbandState.initial(plan.r_l, plan.eta, plan.resource_name)
        self.rng = np.random.RandomState(seed)

    # -- sampling, as Katib's parsing_util does it ---------------------------------------
    def sample(self) -> dict[str, str]:
        """One new configuration, drawn as Katib's parsing_util draws it."""
        lows: list[float] = []
        highs: list[float] = []
        for p in self.params:
            if p.type == "categorical":
                lows += [0.0] * len(p.choices)
                highs += [1.0] * len(p.choices)
            elif p.type == "discrete":
                values = [int(v) for v in p.choices]
                lows.append(min(values))
                highs.append(max(values))
            else:
                lows.append(float(p.low))
                highs.append(float(p.high))
        x = self.rng.uniform(lows, highs, size=(1, len(lows)))[0]
        out: dict[str, str] = {}
        k = 0
        for p in self.params:
            if p.type == "int":
                out[p.name] = str(int(round(x[k], 0)))
                k += 1
            elif p.type == "double":
                out[p.name] = str(float(x[k]))
                k += 1
            elif p.type == "discrete":
                values = [int(v) for v in p.choices]
                out[p.name] = str(values[int(np.argmin(np.absolute(np.subtract(values, x[k]))))])
                k += 1
            else:
                out[p.name] = str(p.choices[int(np.argmax(x[k : k + len(p.choices)]))])
                k += len(p.choices)
        return out

    # -- one GetSuggestions call ----------------------------------------------------------
    def suggest(self, request: int, trials: list[SeenTrial]) -> tuple[HyperbandState, list[dict[str, str]]]:
        """Katib's answer to a request for `request` trials: (state after it, trials).
        NotReady when the service raises. The state is the caller's to keep or drop."""
        a = answer(self.state, request)
        if a.kind == "none":
            return a.state, []
        if a.kind == "master":
            out = []
            for _ in range(a.count):
                values = self.sample()
                if a.state.resource in values:
                    values[a.state.resource] = str(a.resource)
                out.append(values)
            return a.state, out
        last = sorted(trials, key=lambda t: t.start)[-a.promote_from :]
        if any(not t.succeeded for t in last):
            raise NotReady("a trial of the rung being promoted has not succeeded")
        try:
            ranked = sorted(last, key=lambda t: float(t.objective), reverse=self.maximize)
        except ValueError:
            raise NotReady("a trial of the rung has no numeric objective") from None
        return a.state, [
            {k: (str(a.resource) if k == a.state.resource else v) for k, v in t.assignments.items()}
            for t in ranked[: a.count]
        ]

    def describe(self) -> str:
        st = self.state
        return f"bracket s={st.current_s}, rung i={st.current_i}, evaluating {st.evaluating} trial(s), r={st.r:g}"
