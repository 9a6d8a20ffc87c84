"""Recorded val_accuracy curves replayed in other orders through the early-stopping and suggestion rules:
a trial's curve does not depend on when it runs (seeded), so a replay gives what a real run in that order
would spend, without training again."""

from __future__ import annotations


def replay(curves: list[list[float]], target: float, settings, stop: bool) -> tuple[int | None, int]:
    """Run recorded val_accuracy curves one trial at a time, with or without the medianstop rule and check the
    dry-run applies (pipeline/medianstop.py): epochs spent until a report reaches `target`, and epochs in all."""
    from pipeline.katib.medianstop import StopCheck, threshold

    reached: int | None = None
    spent = 0
    succeeded: list[list[float]] = []
    for curve in curves:
        rule = threshold(succeeded, settings) if stop else None
        check = StopCheck(rule, True, settings.start_step) if rule is not None else None
        seen = []
        for value in curve:
            spent += 1
            seen.append(value)
            if reached is None and value >= target:
                reached = spent
            if check and check.report(value):
                break
        else:
            succeeded.append(seen)
    return reached, spent


def replay_orders(curves: list[list[float]], target: float, settings, orders: int, seed: int) -> dict:
    """Mean epochs to `target` over `orders` random orders of the same trials, without and with medianstop.

    One run's figure hangs on where its first good trial happens to fall. A trial's val_accuracy curve does
    not depend on when it runs (seeded), so replaying the recorded curves of plain random search in many
    orders gives the expected figure. A medianstop order whose good trials were all stopped counts as missed."""
    import random

    rng, plain, stopped, missed = random.Random(seed), [], [], 0
    for _ in range(orders):
        order = rng.sample(curves, len(curves))
        a, b = replay(order, target, settings, False)[0], replay(order, target, settings, True)[0]
        if a is None:  # the target is beyond every recorded trial: no order reaches it
            return {"orders": orders, "reachable": False}
        plain.append(a)
        if b is None:
            missed += 1
        else:
            stopped.append(b)
    result = {
        "orders": orders,
        "reachable": True,
        "random_mean_epochs": round(sum(plain) / orders, 2),
        "medianstop_missed_orders": missed,
    }
    if stopped:
        result["medianstop_mean_epochs"] = round(sum(stopped) / len(stopped), 2)
        result["speedup_vs_random"] = round(result["random_mean_epochs"] / result["medianstop_mean_epochs"], 2)
    return result


def replay_asha(curves: list[list[float]], target: float, plan) -> dict:
    """Recorded val_accuracy curves (one per configuration, plan.max_resource epochs each, in the order given)
    run through ASHA's own rule (`pipeline.suggestion.asha.suggest`, one free slot at a time): a new configuration
    is the next recorded curve, run to the lowest rung; a promotion continues a curve from the lower rung's
    epochs, as a trial resumed from its checkpoint does. Ends when ASHA asks for a new configuration and none is
    left (it asks for one only when nothing can be promoted). Epochs until a report reaches `target`, epochs in
    all, and the best report seen. A trial's objective is its last report (asha.yaml's metricStrategy `latest`:
    a resumed trial prints only the epochs it trains, so its last report is the value at the rung's budget)."""
    from pipeline.suggestion.asha import SUCCEEDED, TrialView, suggest

    rungs = plan.rungs
    trials: list[TrialView] = []
    promoted: set[str] = set()
    spent, reached, best, used = 0, None, 0.0, 0
    while True:
        # No search space: the replay supplies each new configuration itself (the next recorded curve).
        (decision,), promoted = suggest(plan, [], True, trials, 1, len(trials), promoted)
        if decision.promoted_from is None:
            if used == len(curves):
                break
            config, start, stop = used, 0, rungs[0]
            used += 1
        else:
            config = int(decision.assignments["config"])
            start, stop = rungs[decision.rung - 1], rungs[decision.rung]
        reports = curves[config][start:stop]
        for value in reports:
            spent += 1
            if reached is None and value >= target:
                reached = spent
        best = max([best, *reports])
        trials.append(
            TrialView(
                f"t{len(trials)}", {"config": str(config), plan.resource_name: str(stop)}, SUCCEEDED, str(reports[-1])
            )
        )
    return {"epochs_to_target": reached, "epochs_total": spent, "best": best, "trials": len(trials)}
