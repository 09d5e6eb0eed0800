"""The dataset benchmarks in their short mode (the full mode: `bash scripts/bench.sh data`).

Speed figures are printed, never asserted (timing belongs to the full benchmark run side by side
with sha256sum); memory, bytes re-sent and bytes stored are properties, and are asserted.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_datasets.py"


def test_short_benchmark_meets_the_memory_and_transfer_goals(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_datasets", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    figures = bench.run(short=True, workdir=str(tmp_path))

    with capsys.disabled():
        print(f"\ndataset ingest (short): {figures['speed']}")
    assert figures["rss"]["rss_mb"] < bench.GOALS["rss_mb"]
    assert figures["rss"]["reupload_bytes"] == 0
    assert figures["resume"]["resent_chunks"] <= bench.GOALS["resent_chunks"]
    assert 25 <= figures["resume"]["killed_at_pct"] <= 75
