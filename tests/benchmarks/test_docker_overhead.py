"""The Docker overhead benchmark in its short mode: it runs and reports all three figures.

The goal (≤ 1 s added, median) is judged by `bash scripts/bench.sh docker`, not asserted here.
"""

from __future__ import annotations

from benchmarks.docker_overhead import measure


def test_benchmark_short_mode(image_repository: str) -> None:
    result = measure(reps=1, repository=image_repository)

    assert result["image"].startswith(f"{image_repository}:")
    assert set(result["median_s"]) == {
        "docker run python -c pass",
        "mllib train (docker)",
        "mllib train (process)",
    }
    assert all(value > 0 for value in result["median_s"].values())
    assert result["docker_added_s"] == (
        result["median_s"]["mllib train (docker)"] - result["median_s"]["docker run python -c pass"]
    )
