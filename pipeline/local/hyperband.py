"""Katib's hyperband bracket schedule, run locally: a master rung of n random
configurations at resource r, then the top ceil(n_i / eta) of each finished
rung at r * eta^i (`pkg/suggestion/v1beta1/hyperband` in Katib v0.19)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.katib.algorithms import HyperbandPlan
from pipeline.katib.experiment import Param

WAIT = "wait"  # a proposal: nothing to run until running trials finish (hyperband rungs)


@dataclass
class HyperbandState:
    eta: float
    r_l: float
    resource: str
    s_max: int
    s: int = -2
    i: int = 0
    n: int = 0
    r: float = 0.0
    rung: int = 0
    queue: list[dict[str, Any]] = field(default_factory=list)
    issued: int = 0  # trials issued in the current rung


class Hyperband:
    """Katib's hyperband bracket schedule: a master rung of n random configs at
    resource r, then the top ceil(n_i/eta) of each finished rung at r*eta^i."""

    def __init__(self, params: list[Param], maximize: bool, plan: HyperbandPlan, seed: int | None = None):
        self.params = params
        self.maximize = maximize
        self.state = HyperbandState(eta=plan.eta, r_l=plan.r_l, resource=plan.resource_name, s_max=plan.s_max)
        self.rng = np.random.RandomState(seed)

    def _bracket(self, s: int) -> None:
        st = self.state
        st.s, st.i = s, 0
        st.n = int(math.ceil(float(st.s_max + 1) * (st.eta ** s) / float(s + 1)))
        st.r = st.r_l * st.eta ** (-s)

    def _random(self) -> dict[str, Any]:
        out = {}
        for p in self.params:
            if p.type in ("discrete", "categorical"):
                out[p.name] = p.choices[self.rng.randint(len(p.choices))]
            elif p.distribution == "logUniform":
                v = math.exp(self.rng.uniform(math.log(p.min), math.log(p.max)))
                out[p.name] = int(round(v)) if p.type == "int" else v
            elif p.type == "int":
                out[p.name] = int(self.rng.randint(int(p.min), int(p.max) + 1))
            else:
                out[p.name] = float(self.rng.uniform(p.min, p.max))
        return out

    def propose(self, finished: list[tuple[int, dict[str, Any], float | None]]):
        """`finished`: (rung, assignments, objective or None) of finished trials.
        Returns a dict of values (+ '_rung'), WAIT or None (schedule done)."""
        st = self.state
        if st.s == -2:
            self._bracket(st.s_max)
            st.queue = [self._with_resource(self._random(), int(st.r)) for _ in range(st.n)]
            st.rung, st.issued = 1, 0
        if not st.queue:
            done = [f for f in finished if f[0] == st.rung]
            if len(done) < st.issued:
                return WAIT
            if st.i >= st.s:  # bracket over
                if st.s - 1 < 0:
                    return None
                self._bracket(st.s - 1)
                st.queue = [self._with_resource(self._random(), int(st.r)) for _ in range(st.n)]
            else:
                n_i = math.ceil(st.n * st.eta ** (-st.i))
                top = int(math.ceil(n_i / st.eta))
                st.i += 1
                r_i = int(st.r * st.eta ** st.i)
                ranked = sorted((f for f in done if f[2] is not None and math.isfinite(f[2])),
                                key=lambda f: f[2], reverse=self.maximize)
                st.queue = [self._with_resource(dict(f[1]), r_i) for f in ranked[:top]]
                if not st.queue:
                    return None
            st.rung += 1
            st.issued = 0
        st.issued += 1
        values = st.queue.pop(0)
        values["_rung"] = st.rung
        return values

    def _with_resource(self, values: dict[str, Any], r: int) -> dict[str, Any]:
        values.pop("_rung", None)
        values[self.state.resource] = r
        return values


