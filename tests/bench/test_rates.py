"""bench.rates: a training rate as GFLOP/s and as a share of the matmul rate of its precision."""

from __future__ import annotations

import pytest

from bench.rates import matmul_share
from bench.stats import significant
from tests.bench.rounding import assert_ratio_within_rounding


def test_the_share_of_matmul_survives_its_rounding_on_an_emulated_bfloat16():
    # Issue 29's CPU without native bfloat16: the share 0.058 (from unrounded figures) was checked against
    # 0.0556, which is 0.1 / 1.8, the trial's GFLOP/s and the emulated bfloat16 matmul's, each rounded to one
    # decimal; a trial at about 0.104 GFLOP/s loses 4 % of the share in that rounding.
    peak = 1.8037  # what matmul_gflops returns, unrounded
    share = matmul_share(images_per_s=60, flops_per_image=1.74e6, matmul_gflops=peak)
    assert share == {"effective_gflops": 0.104, "of_matmul": 0.0579}
    assert_ratio_within_rounding(share["of_matmul"], share["effective_gflops"], significant(peak))
    # The check is as tight as the rounding: the old one-decimal figures and a ratio 4 % off both fail it.
    with pytest.raises(AssertionError):
        assert_ratio_within_rounding(0.058, 0.1, 1.8)
    with pytest.raises(AssertionError):
        assert_ratio_within_rounding(0.0556, 0.104, 1.8)
