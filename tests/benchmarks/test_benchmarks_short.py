"""The benchmark scripts run (short mode) and report their figures; full runs: scripts/bench.sh."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_startup_benchmark_reports_mllib_beside_a_bare_interpreter():
    rows = _run("startup.py", "--runs", "2")
    assert set(rows) == {"python -c pass", "mllib --help"}
    assert all(row["median_s"] > 0 for row in rows.values())


def test_metric_logging_benchmark_records_every_point():
    result = _run("metric_logging.py", "--impl", "mllib", "--points", "5000")
    assert result["points"] == 5000  # the script checks the registry holds all of them
    assert result["end_to_end_us_per_point"] >= result["log_metric_us_per_point"] > 0


def test_dataset_benchmark_meets_its_memory_and_transfer_goals():
    # Speed beside sha256sum is reported, not asserted: it is measured in the full run.
    result = _run("dataset_ingest.py", "--short")
    print(f"\ndataset ingest (short): {result['speed']}")
    assert result["goals"]["peak RSS < 100 MB"], result["rss"]
    assert result["goals"]["re-upload stores 0 bytes"], result["rss"]
    assert result["goals"]["resume re-sends <= 1 chunk"], result["resume"]
    assert 25 <= result["resume"]["killed_at_pct"] <= 75
