"""bench.sections.profile: one epoch's op time from TensorFlow's profiler, grouped."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import summary_rows
from bench.sections import profile
from tests.conftest import SAMPLE


@pytest.mark.slow
@pytest.mark.parametrize("precision, policy", [("float32", "float32"), ("bfloat16", "mixed_bfloat16")])
def test_profile_section_groups_one_epochs_op_time(tmp_path, precision, policy):
    import keras

    caller = keras.mixed_precision.global_policy().name
    result = profile.measure(SAMPLE, 300, tmp_path, precision)
    assert result["precision"] == policy and Path(result["trace"]).exists() and result["op_self_s"] > 0
    assert f"profile-{policy}" in result["trace"]
    groups = result["groups"]
    # Every op type falls in one group, so the shares cover all the op time (rounded to 0.1 % each).
    assert sum(groups.values()) == pytest.approx(100, abs=0.5)
    assert {"convolution, backward", "convolution, forward", "dense layer"} <= set(groups)
    assert set(result["top_op_types"]) and max(result["top_op_types"].values()) <= 100
    # Mixed precision casts between float32 variables and bfloat16 activations in every layer; they are counted
    # in a group of their own, apart from the input pipeline. (Their share on 300 rows, 1.0-1.6 % against
    # float32's 0.4 %, is too close to the rounding for a threshold.)
    if policy == "mixed_bfloat16":
        assert groups["dtype casts"] > 0
    assert keras.mixed_precision.global_policy().name == caller  # the section leaves the policy as it found it
    # epoch_wall_s is rounded to 0.01 s, which on a 0.2-second epoch of 300 rows is 2.5 % of it
    assert result["images_per_s"] == pytest.approx(
        result["rows"] / result["epoch_wall_s"], rel=0.005 / result["epoch_wall_s"] + 0.001
    )
    shown = dict(summary_rows({"profile": result}))[f"one epoch's op time ({policy}, TF profiler)"]
    assert f"{result['images_per_s']} images/s under the profiler" in shown
