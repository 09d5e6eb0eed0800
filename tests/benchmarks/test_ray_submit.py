"""The Ray submit benchmark in its short mode, on the session's head: it runs both paths and
reports their p50s. The goal (mllib ≤ 1.5 s) is judged by `bash scripts/bench.sh ray`."""

from __future__ import annotations

from typing import Any

from benchmarks.ray_submit import measure


def test_benchmark_short_mode(ray_head: Any) -> None:
    result = measure(runs=1, address=ray_head.address)

    assert set(result["p50_s"]) == {
        "bare submit_job",
        "mllib train --runtime ray",
        "bare submit_job → RUNNING",
        "mllib train --runtime process",
        "mllib train --runtime ray, files shipped",
    }
    assert all(value > 0 for value in result["p50_s"].values())
    assert result["mllib_overhead_s"] == (
        result["p50_s"]["mllib train --runtime ray"] - result["p50_s"]["bare submit_job"]
    )
