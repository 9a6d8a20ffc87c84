"""ASHA (asynchronous successive halving, Li et al. 2018) as a pure function of what
Katib's controller sends: the trial list and the number of assignments it wants.

Each requested slot gets, in ASHA's rule, a promotion or a new configuration:
for the rungs from the top down, a configuration whose result is in the top
1/eta of rung k's completed results and that has no trial at rung k+1 yet runs
again at rung k+1's resource (`resource_name`, the epochs); when no rung has
one, a new configuration starts at the lowest rung. Nothing waits for a rung
to fill, so the search never stalls the way Katib v0.19's hyperband does.

No state lives in the process. A configuration is its assignments without the
resource (canonical JSON), so a promotion is recognised in the trial list; the
promotions already issued also come back through the Suggestion's algorithm
settings (`asha_promoted`, which Katib round-trips), so a trial not yet in the
controller's list is not promoted twice; a new configuration's seed is derived
from random_state and the slot's place in the Suggestion (total - current
request number + i). The same request therefore gets the same answer from a
restarted service, and a retried call (Katib retries a rejected reply) too.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.katib.algorithms import AshaPlan, py_int
from pipeline.katib.experiment import Param
from pipeline.katib.render import PYTHON_STYLE, render_value

SUCCEEDED = "SUCCEEDED"  # Katib's TrialStatus.TrialConditionType names (api.proto)


@dataclass(frozen=True)
class TrialView:
    """One trial as the controller sends it: the latest condition and the objective's summary
    observation (min/max/latest by metricStrategy), a string, or None when it has none."""

    name: str
    assignments: dict[str, str]
    condition: str
    value: str | None = None

    def result(self) -> float | None:
        """The objective as a number when the trial completed its rung; running, failed, killed and
        early-stopped trials have no rung result (and so are never promoted)."""
        if self.condition != SUCCEEDED or self.value is None:
            return None
        try:
            value = float(self.value)
        except ValueError:
            return None
        return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Decision:
    """One assignment set for the reply; `promoted_from` names the trial whose configuration it continues."""

    assignments: dict[str, str]
    rung: int
    promoted_from: str | None = None


def config_key(assignments: dict[str, str], resource_name: str) -> str:
    """A configuration's identity: its assignments without the resource, as canonical JSON."""
    return json.dumps(
        {k: v for k, v in assignments.items() if k != resource_name}, sort_keys=True, separators=(",", ":")
    )


def promotion_mark(key: str, rung: int) -> str:
    """How an issued promotion is written into the round-tripped setting: short and stable."""
    return f"{rung}:{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def parse_marks(text: str) -> set[str]:
    return {m for m in text.split(",") if m}


def format_marks(marks: Iterable[str]) -> str:
    return ",".join(sorted(marks))


def slot_seed(random_state: int, index: int, attempt: int = 0) -> int:
    """The seed of the new configuration in slot `index` of the Suggestion (0, 1, 2, ...)."""
    return int(np.random.SeedSequence([random_state, index, attempt]).generate_state(1)[0])


def suggest(
    plan: AshaPlan,
    params: list[Param],
    maximize: bool,
    trials: list[TrialView],
    request: int,
    first_index: int,
    promoted: Collection[str] = frozenset(),
) -> tuple[list[Decision], set[str]]:
    """`request` decisions for slots first_index, first_index + 1, ...; and the promotion marks
    to round-trip (those given, plus the ones issued now)."""
    rungs = plan.rungs
    rung_of = {resource: k for k, resource in enumerate(rungs)}
    taken = set(promoted)  # (key, rung) pairs that exist or were issued, as marks
    best: list[dict[str, tuple[float, int, TrialView]]] = [{} for _ in rungs]
    keys = set()
    for order, trial in enumerate(trials):
        key = config_key(trial.assignments, plan.resource_name)
        keys.add(key)
        resource = py_int(trial.assignments.get(plan.resource_name))
        k = None if resource is None else rung_of.get(resource)
        if k is None:
            continue  # a resource no rung has (a hand-made trial): not part of the ladder
        taken.add(promotion_mark(key, k))
        value = trial.result()
        if value is None:
            continue
        score = value if maximize else -value
        if key not in best[k] or score > best[k][key][0]:
            best[k][key] = (score, order, trial)
    out: list[Decision] = []
    issued = set(promoted)
    history: list[Any] | None = None
    for i in range(request):
        decision = _promotion(plan, rungs, best, taken)
        if decision is None:
            if history is None:
                history = lowest_rung_history(plan, params, trials) if plan.base_sampler == "tpe" else []
            assignments = new_configuration(plan, params, maximize, history, first_index + i, keys)
            keys.add(config_key(assignments, plan.resource_name))
            decision = Decision(assignments, 0)
        else:
            mark = promotion_mark(config_key(decision.assignments, plan.resource_name), decision.rung)
            taken.add(mark)
            issued.add(mark)
        out.append(decision)
    return out, issued


def _promotion(plan: AshaPlan, rungs: tuple[int, ...], best, taken: set[str]) -> Decision | None:
    """ASHA's get_job: the best configuration of the highest rung that has one in its top 1/eta
    and not yet at the next rung."""
    for k in range(len(rungs) - 2, -1, -1):
        ranked = sorted(best[k].items(), key=lambda item: (-item[1][0], item[1][1]))
        for key, (_, _, trial) in ranked[: len(ranked) // plan.eta]:
            if promotion_mark(key, k + 1) not in taken:
                assignments = dict(trial.assignments)
                assignments[plan.resource_name] = str(rungs[k + 1])
                return Decision(assignments, k + 1, trial.name)
    return None


# --- new configurations ---------------------------------------------------------------------------


def distributions(params: list[Param], resource_name: str) -> dict[str, Any]:
    """Optuna distributions of the search space without the resource. logUniform is honoured;
    normal and logNormal are sampled uniformly (log-uniformly) between min and max."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in params:
        if p.name == resource_name:
            continue
        log = p.distribution in ("logUniform", "logNormal") and p.numeric and p.low > 0
        if not p.numeric:
            out[p.name] = CategoricalDistribution(list(p.choices))
        elif p.type == "int":
            lo, hi = int(p.low), int(p.high)
            step = int(p.step) if p.step and not log else 1
            out[p.name] = IntDistribution(lo, lo + (hi - lo) // step * step, log=log, step=step)
        elif p.step and not log:
            out[p.name] = FloatDistribution(
                p.low, p.low + math.floor((p.high - p.low) / p.step + 1e-9) * p.step, step=p.step
            )
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=log)
    return out


def new_configuration(
    plan: AshaPlan,
    params: list[Param],
    maximize: bool,
    history: list[Any],
    index: int,
    known: Collection[str] = frozenset(),
) -> dict[str, str]:
    """A configuration nobody has tried, at the lowest rung, from the base sampler seeded for this slot;
    tpe learns from `history` (lowest_rung_history)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(params, plan.resource_name)
    if not dists:  # nothing to draw (a caller replaying its own configurations): only the resource
        return {p.name: str(plan.rungs[0]) for p in params if p.name == plan.resource_name}
    strings: dict[str, str] = {}
    for attempt in range(100):
        seed = slot_seed(plan.random_state, index, attempt)
        sampler: optuna.samplers.BaseSampler
        if plan.base_sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed)
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
        study.add_trials(history)
        values = study.ask(dists).params
        strings = {p.name: render_value(values[p.name], PYTHON_STYLE) for p in params if p.name in values}
        strings[plan.resource_name] = str(plan.rungs[0])
        strings = {p.name: strings[p.name] for p in params}  # the search space's order
        if config_key(strings, plan.resource_name) not in known:
            break  # else: a small discrete space drew a known configuration; draw again
    return strings


def lowest_rung_history(plan: AshaPlan, params: list[Param], trials: list[TrialView]) -> list[Any]:
    """The lowest rung's results as Optuna trials: all at the same resource, so comparable."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    dists = distributions(params, plan.resource_name)
    out = []
    for trial in trials:
        value = trial.result()
        if value is None or py_int(trial.assignments.get(plan.resource_name)) != plan.rungs[0]:
            continue
        values: dict[str, Any] = {}
        try:
            for name, dist in dists.items():
                text = trial.assignments[name]
                values[name] = (
                    text
                    if isinstance(dist, CategoricalDistribution)
                    else (int(float(text)) if isinstance(dist, optuna.distributions.IntDistribution) else float(text))
                )
            out.append(optuna.trial.create_trial(params=values, distributions=dists, value=value))
        except (KeyError, ValueError):
            continue  # a hand-made trial outside the space: TPE cannot use it
    return out
