"""How Katib's controllers judge an Experiment from its trials: the trial
conditions, the optimal trial (`updateTrialsSummary` in `status_util.go`), the
end conditions, checked in Katib's order, how many trials ReconcileTrials asks
for, plus the Experiment object's status block (`kubectl get experiment -o json`).
How one trial gets its condition is `pipeline.katib.trial_rules`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.katib.collector import UNAVAILABLE, go_parse_float
from pipeline.katib.experiment import Objective

# Katib trial conditions (the Experiment's status lists are built from them).
SUCCEEDED, FAILED, EARLY_STOPPED, METRICS_UNAVAILABLE, KILLED, RUNNING, PENDING = (
    "Succeeded",
    "Failed",
    "EarlyStopped",
    "MetricsUnavailable",
    "Killed",
    "Running",
    "Pending",
)
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"  # Katib labels each Trial with its Experiment
COMPLETED = (SUCCEEDED, FAILED, EARLY_STOPPED, METRICS_UNAVAILABLE, KILLED)
# (trial condition, status list, status counter), in the order `kubectl get -o json` shows them.
STATUS_LISTS = (
    (SUCCEEDED, "succeededTrialList", "trialsSucceeded"),
    (FAILED, "failedTrialList", "trialsFailed"),
    (KILLED, "killedTrialList", "trialsKilled"),
    (EARLY_STOPPED, "earlyStoppedTrialList", "trialsEarlyStopped"),
    (METRICS_UNAVAILABLE, "metricsUnavailableTrialList", "trialMetricsUnavailable"),
    (RUNNING, "runningTrialList", "trialsRunning"),
    (PENDING, "pendingTrialList", "trialsPending"),
)

GOAL_REACHED = (SUCCEEDED, "ExperimentGoalReached", "Experiment has succeeded because Objective goal has reached")
MAX_FAILED_REACHED = (FAILED, "ExperimentFailed", "Experiment has failed because max failed count has reached")
MAX_TRIALS_REACHED = (
    SUCCEEDED,
    "ExperimentMaxTrialsReached",
    "Experiment has succeeded because max trial count has reached",
)
SUGGESTION_END_REACHED = (
    SUCCEEDED,
    "ExperimentSuggestionEndReached",
    "Experiment has succeeded because suggestion service has reached the end",
)


@dataclass(frozen=True)
class TrialOutcome:
    """What Katib knows of one trial: its name, condition, objective string and observation."""

    name: str
    state: str
    objective: str = UNAVAILABLE  # the metricStrategy's pick, a Katib string
    observation: list[dict[str, str]] | None = None  # [{name, min, max, latest}]
    assignments: dict[str, str] | None = None


def optimal_trial(trials: Iterable[TrialOutcome], objective: Objective) -> tuple[TrialOutcome | None, bool]:
    """Katib's updateTrialsSummary over `trials` in the controller's list order: (best trial,
    goal reached), quirks included. A non-numeric objective makes that trial the best without
    setting the best value, which stays at the first numeric value or Go's zero (0.0): a later
    trial must beat that, and the goal is checked against it."""
    best, best_value, reached = None, 0.0, False
    for t in trials:
        if t.observation is None or t.objective == UNAVAILABLE:
            continue
        value = go_parse_float(t.objective)
        if value is None:
            best = t
            continue
        if best is None:
            best, best_value = t, value
        if objective.type in ("maximize", "minimize") and objective.better(value, best_value):
            best, best_value = t, value
        if objective.goal is not None and objective.type in ("maximize", "minimize") and objective.reached(best_value):
            reached = True
    return best, reached


def ranked_trials(trials: Iterable[TrialOutcome], objective: Objective) -> list[TrialOutcome]:
    """The trials that report a numeric objective, best first; ties keep list order, so the first one
    is the trial Katib picks as currentOptimalTrial (it replaces the best only on a strictly better value)."""
    scored = [
        (value, t)
        for t in trials
        if t.observation is not None
        and t.objective != UNAVAILABLE
        and (value := go_parse_float(t.objective)) is not None
        and math.isfinite(value)
    ]
    return [t for value, t in sorted(scored, key=lambda vt: -vt[0] if objective.maximize else vt[0])]


def counts(trials: Iterable[TrialOutcome]) -> dict[str, int]:
    c = dict.fromkeys(COMPLETED, 0)
    for t in trials:
        if t.state in c:
            c[t.state] += 1
    return c


def end_condition(
    trials: list[TrialOutcome],
    objective: Objective,
    max_trials: int | None,
    max_failed: int | None,
    suggestions_ended: bool,
) -> tuple[str, str, str] | None:
    """(type, reason, message) when the Experiment ends now, in Katib's order; None while it runs.
    `suggestions_ended`: the algorithm proposes no more and no trial is running."""
    _, reached = optimal_trial(trials, objective)
    if reached:
        return GOAL_REACHED
    c = counts(trials)
    failed = c[FAILED] + c[METRICS_UNAVAILABLE]
    if max_failed is not None and failed != 0 and failed >= max_failed:
        return MAX_FAILED_REACHED
    if max_trials is not None and sum(c.values()) >= max_trials:
        return MAX_TRIALS_REACHED
    if suggestions_ended:
        return SUGGESTION_END_REACHED
    return None


def trials_to_add(trials: Iterable[TrialOutcome], max_trials: int | None, parallel: int, running: int) -> int:
    """How many trials Katib's ReconcileTrials asks the suggestion for now: free slots, capped by
    maxTrialCount minus the completed trials, where (unlike the end condition) MetricsUnavailable
    trials do not count as completed, so Katib can start more than maxTrialCount trials; less the
    early-stopped trials without an observation (ReconcileSuggestions' incompleteEarlyStoppingCount),
    which in Katib v0.19 is every early-stopped trial (trial_rules.Verdict.observed): each one takes a
    parallel slot for good."""
    trials = list(trials)
    c = counts(trials)
    completed = c[SUCCEEDED] + c[FAILED] + c[KILLED] + c[EARLY_STOPPED]
    required = parallel if max_trials is None else min(max_trials - completed, parallel)
    return max(0, required - running - unobserved_early_stops(trials))


def unobserved_early_stops(trials: Iterable[TrialOutcome]) -> int:
    return sum(1 for t in trials if t.state == EARLY_STOPPED and t.observation is None)


def early_stop_stall(trials: Iterable[TrialOutcome], parallel: int) -> str | None:
    """Why Katib v0.19 starts no more trials once as many trials early-stopped as parallelTrialCount
    allows, nothing running (the Experiment stays Running for ever), or None."""
    held = unobserved_early_stops(trials)
    if held < parallel:
        return None
    return (
        f"{held} early-stopped trial(s) hold all {parallel} parallel slot(s): Katib v0.19 never records an "
        "early-stopped trial's observation (its metrics collector waits for ever for the process it stopped, "
        "so the trial's Job never ends; kubeflow/katib#1377) and requests no new trial while one lacks it; "
        "on Katib the Experiment stays Running (with retain: true, the stopped trials' pods keep running)"
    )


def condition(ctype: str, status: str, reason: str, message: str, at: str) -> dict[str, str]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": at,
        "lastTransitionTime": at,
    }


def optimal_trial_object(best: TrialOutcome | None, parameter_order: list[str]) -> dict[str, Any]:
    """status.currentOptimalTrial: empty until a trial reports the objective."""
    if best is None:
        return {"bestTrialName": "", "parameterAssignments": [], "observation": {"metrics": []}}
    a = best.assignments or {}
    return {
        "bestTrialName": best.name,
        "parameterAssignments": [{"name": n, "value": a[n]} for n in parameter_order if n in a],
        "observation": {"metrics": best.observation or []},
    }


# --- reading an Experiment object (local or from the API server) ----------------------------------


def conditions(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def condition_is_true(obj: dict[str, Any] | None, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions(obj))


def describe_conditions(obj: dict[str, Any] | None) -> str:
    conds = conditions(obj)
    if not conds:
        return "no conditions yet (is the Katib controller running?)"
    return "; ".join(
        f"{c.get('type')}={c.get('status')} ({c.get('reason', '')}: {c.get('message', '')})" for c in conds
    )
