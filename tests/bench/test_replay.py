"""bench.replay: recorded curves replayed through medianstop's rule and ASHA's, checked against orders
worked through by hand."""

from __future__ import annotations

import pytest

from bench.replay import replay, replay_asha, replay_orders


def test_replay_orders_gives_the_expected_epochs_to_target():
    from pipeline.katib.medianstop import MedianStopSettings

    ok, bad, good = [0.7] * 4, [0.1] * 4, [0.9, 0.9, 0.9, 0.95]
    curves = [ok] * 3 + [bad] * 4 + [good]
    settings = MedianStopSettings(min_trials_required=3, start_step=2)
    # One order by hand: 3 x 4 epochs, the bad trial stopped after 2, the good one hits 0.95 at its 4th.
    assert replay([ok, ok, ok, bad, good], 0.95, settings, stop=True) == (18, 18)
    assert replay([ok, ok, ok, bad, good], 0.95, settings, stop=False) == (20, 20)
    result = replay_orders(curves, 0.95, settings, orders=4000, seed=0)
    # Without stopping every trial runs 4 epochs; the good one is equally likely in each of 8 places: 4 x 4.5.
    assert result["random_mean_epochs"] == pytest.approx(18, abs=0.6)
    # Bad trials met after 3 successes (whose mean is above 0.1) are stopped at epoch 2; the good one never
    # is. Enumerating the 280 distinct orders of o o o b b b b g gives 16.57 epochs on average.
    assert result["medianstop_missed_orders"] == 0
    assert result["medianstop_mean_epochs"] == pytest.approx(16.57, abs=0.5)
    # A rule that never forms stops nothing: the same orders cost the same.
    never = replay_orders(curves, 0.95, MedianStopSettings(min_trials_required=100, start_step=2), 500, 0)
    assert never["medianstop_mean_epochs"] == never["random_mean_epochs"] and never["speedup_vs_random"] == 1.0
    assert replay_orders(curves, 0.99, settings, 10, 0) == {"orders": 10, "reachable": False}


def test_asha_replay_follows_ashas_rule_by_hand():
    from pipeline.katib.algorithms import AshaPlan

    plan = AshaPlan(
        eta=3, min_resource=1, max_resource=9, resource_name="epochs", random_state=0, base_sampler="random"
    )
    curves = [[0.1 * (i + 1)] * 9 for i in range(8)] + [[0.9] * 8 + [0.99]]
    # Worst order for ASHA, each configuration better than all before it: every new one is promoted as soon as
    # its rung has room (rung 0's top third, then rung 1's), worked through by hand: 9 new (1 epoch each),
    # 7 to rung 1 (+2 each), 5 to rung 2 (+6 each) = 9 + 14 + 30 = 53, the target met at the very last epoch.
    assert replay_asha(curves, 0.99, plan) == {"epochs_to_target": 53, "epochs_total": 53, "best": 0.99, "trials": 21}
    # Best first: random search meets the target at epoch 9, ASHA only once rung 0 holds 9 results and
    # rung 1 holds 3 (9 x 1 + 3 x 2 + 6): ASHA is no help when the first configuration is the best.
    assert replay(curves[::-1], 0.99, None, stop=False)[0] == 9
    assert replay_asha(curves[::-1], 0.99, plan) == {
        "epochs_to_target": 21,
        "epochs_total": 21,
        "best": 0.99,
        "trials": 13,
    }
    # A target nothing reaches: every epoch ASHA decides to spend is counted, none reaches it.
    assert replay_asha(curves, 1.5, plan)["epochs_to_target"] is None
