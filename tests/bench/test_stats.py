"""bench.stats: the statistics the sections report."""

from __future__ import annotations

import pytest

from bench.stats import accuracy_interval, percentile, significant, spread


def test_accuracy_interval_is_wilsons():
    # Textbook value: no success in 10 trials gives the Wilson interval 0 to 0.2775.
    assert accuracy_interval(0, 10) == [0.0, 0.2775]
    # The split-0 ensemble's 20 errors in 4,200 rows, against Wilson's formula written out.
    n, p, z = 4200, 4180 / 4200, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    assert accuracy_interval(4180, 4200) == [round(centre - half, 4), round(centre + half, 4)]
    assert accuracy_interval(4180, 4200)[0] < 0.995 < 0.996 < accuracy_interval(4180, 4200)[1]


def test_significant_keeps_three_digits_at_any_magnitude():
    assert [significant(v) for v in (0.0578812, 95.349, 1234.5, 0.99949)] == [0.0579, 95.3, 1230.0, 0.999]
    assert significant(0.104321, digits=2) == 0.1


def test_spread_is_mean_population_stdev_and_range():
    assert spread([3, 5, 7, 9]) == {"mean": 6.0, "stdev": pytest.approx(2.24), "min": 3, "max": 9}
    assert spread([0.99]) == {"mean": 0.99, "stdev": 0.0, "min": 0.99, "max": 0.99}


def test_percentile_is_the_value_at_its_rank_of_the_sorted_values():
    values = [0.5, 0.1, 0.4, 0.2, 0.3]  # any order
    assert [percentile(values, q) for q in (0, 0.5, 0.9, 0.99, 1.0)] == [0.1, 0.3, 0.5, 0.5, 0.5]
    assert percentile(list(range(100)), 0.9) == 90
    assert percentile([], 0.5) is None
