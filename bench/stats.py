"""The statistics the sections report: rounding to significant digits, an accuracy's interval, the spread of
a figure over many orders, a percentile of latencies."""

from __future__ import annotations


def significant(value: float, digits: int = 3) -> float:
    """`value` to `digits` significant digits. A fixed number of decimals does not fit rates that span
    orders of magnitude: an emulated bfloat16 matmul of 1.8 GFLOP/s and a trial's 0.104 GFLOP/s shown as
    0.1 would lose 4 % of the ratio they make."""
    return float(f"{value:.{digits}g}")


def accuracy_interval(correct: int, total: int) -> list[float]:
    """Wilson 95 % interval of an accuracy measured on `total` rows: on 4,200 rows it is about +-0.002, as wide as
    the gap between the figures compared here, so a single hold-out cannot tell 0.9956 from 0.996."""
    from scipy.stats import binomtest

    ci = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


def spread(values: list[float]) -> dict:
    """Mean and population standard deviation (2 decimals), least and largest of `values`."""
    import statistics

    return {
        "mean": round(statistics.fmean(values), 2),
        "stdev": round(statistics.pstdev(values), 2),
        "min": min(values),
        "max": max(values),
    }


def percentile(values: list[float], q: float) -> float | None:
    """The value at quantile `q` (0 to 1; 1 is the largest) of `values`: the one at rank int(q * n) of the
    sorted values, None when there are none."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, int(q * len(ranked)))] if ranked else None
