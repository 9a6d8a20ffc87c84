"""What a figure rounded to significant digits was before the rounding, and a ratio checked within it."""

from __future__ import annotations

import math


def rounded_range(value: float, digits: int = 3) -> tuple[float, float]:
    """What a figure the bench reports (rounded to `digits` significant digits) was before the rounding."""
    assert value > 0 and float(f"{value:.{digits}g}") == value, f"{value} is not rounded to {digits} digits"
    half = 0.5 * 10 ** (math.floor(math.log10(value)) - digits + 1)
    return value - half, value + half


def assert_ratio_within_rounding(ratio: float, numerator: float, denominator: float) -> None:
    """`ratio` was computed from the unrounded numerator and denominator, then all three were rounded: the
    ratio's range must meet the range the two rounded figures allow, and no wider tolerance is given."""
    (r_lo, r_hi), (n_lo, n_hi), (d_lo, d_hi) = (rounded_range(v) for v in (ratio, numerator, denominator))
    assert r_lo <= n_hi / d_lo and n_lo / d_hi <= r_hi, (
        f"{ratio} is not {numerator} / {denominator} (= {numerator / denominator:.4g}) within their rounding"
    )
