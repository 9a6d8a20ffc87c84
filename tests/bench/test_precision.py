"""bench.sections.precision: float32 beside what --precision auto picks, on the sample."""

from __future__ import annotations

import pytest

from bench.report import summary_rows
from bench.sections import precision as section
from tests.bench.rounding import assert_ratio_within_rounding
from tests.conftest import SAMPLE


@pytest.mark.process
@pytest.mark.slow
def test_precision_section_sets_float32_beside_what_auto_picks(tmp_path):
    from trial.hardware import choose_precision, cpu_flags

    result = section.measure(SAMPLE, rows=256, epochs=2, batch_sizes=(64, 128), out=tmp_path)
    auto, _ = choose_precision("auto", cpu_flags(), has_gpu=False)  # no GPU on the machines CI runs on
    assert result["auto_picks"] == auto  # the trial's own choice (its first stderr line) is the hardware module's
    assert result["compared"] == "bfloat16"  # auto's mixed bfloat16 here, or bfloat16 to show what it would give
    assert set(result["matmul_gflops"]) == {"float32", "bfloat16"} and min(result["matmul_gflops"].values()) > 0
    run, larger = result["runs"]
    assert larger["ratio_vs_float32_first_batch"] == pytest.approx(
        larger["bfloat16"]["images_per_s"] / run["float32"]["images_per_s"], abs=0.01
    )
    assert larger["cpu_ratio_vs_float32_first_batch"] == pytest.approx(
        larger["bfloat16"]["images_per_cpu_s"] / run["float32"]["images_per_cpu_s"], abs=0.01
    )
    assert run["ratio_vs_float32_first_batch"] == run["ratio_vs_float32"]
    assert (
        dict(summary_rows({"precision": result}))["images/s float32 at batch 64 vs bfloat16 at batch 128"]
        == f"{larger['ratio_vs_float32_first_batch']}x; per CPU second {larger['cpu_ratio_vs_float32_first_batch']}x"
    )
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        # each side really ran in its precision: the trial's first stderr line names the policy it set
        err = (tmp_path / f"precision-{precision}-64.log.err").read_text().splitlines()
        assert next(line for line in err if line.startswith("trial:")).startswith(f"trial: precision {policy} (asked")
        assert run[precision]["images_per_s"] > 0 and run[precision]["images_per_cpu_s"] > 0
        assert_ratio_within_rounding(
            run[precision]["of_matmul"], run[precision]["effective_gflops"], result["matmul_gflops"][precision]
        )
    assert run["ratio_vs_float32"] == pytest.approx(
        run["bfloat16"]["images_per_s"] / run["float32"]["images_per_s"], abs=0.01
    )
    assert run["cpu_ratio_vs_float32"] == pytest.approx(
        run["bfloat16"]["images_per_cpu_s"] / run["float32"]["images_per_cpu_s"], abs=0.01
    )
    assert "per CPU second" in dict(summary_rows({"precision": result}))["images/s float32 vs bfloat16, batch 64"]
