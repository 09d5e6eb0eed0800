"""The benchmark scripts run (short mode) and report their figures; full runs: scripts/bench.sh."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 300) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_startup_benchmark_reports_help_and_runs_list_beside_the_typer_rich_floor():
    rows = _run("startup.py", "--runs", "2")
    assert set(rows) == {
        "python -c pass",
        'python -c "import typer, rich"',
        "mllib --help",
        "mllib runs list",
    }
    assert all(row["median_s"] > 0 and row["runs"] == 2 for row in rows.values())
    for name in ("mllib --help", "mllib runs list"):
        floor = rows['python -c "import typer, rich"']["median_s"]
        assert rows[name]["over_floor_s"] == rows[name]["median_s"] - floor


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
    upload = result["server_upload"]  # to a real server on loopback, beside --local
    print(f"dataset upload to a team server (short): {upload}")
    assert result["goals"]["server re-upload sends 0 bytes"], upload
    assert upload["again_skipped_chunks"] == upload["size_mib"] // 8  # every 8 MiB chunk


def test_serving_benchmark_measures_the_prod_path_beside_bare_litserve():
    import os
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and wrk is not installed (scripts/test.sh installs it)")
        pytest.skip("wrk is not installed: apt-get install wrk (with CI=true this fails instead)")
    result = _run("serving.py", "--duration", "1", "--rounds", "1", "--processes", "1")
    rows = ("bare_litserve", "mllib_worker", "mllib_inline_1", "mllib_default")
    for server in (*rows, "mllib_default_plain", "loadtest_default"):
        for row in (result[server]["c8"], result[server]["c64"]):
            assert row["rps"] > 0 and row["requests"] > 0
            assert row["non_2xx"] == 0 and row["socket_errors"] == 0
    for server in ("mllib_default", "loadtest_default"):  # each client's own CPU, wrk's too
        assert result[server]["c8"]["client_cpu_us_per_request"] > 0
    for mode in ("mllib_worker", "mllib_inline_1"):
        assert result[mode]["c64"]["connections"] == 64
        requests = result[mode]["c8"]["requests"] + result[mode]["c64"]["requests"]
        assert result[mode]["log_lines"] >= requests  # one JSON line per request, at least
    defaults = result["mllib_default"]["label"]
    assert defaults.startswith("mllib prod, defaults (1..")
    assert set(result["ratios"]) == {
        f"{defaults} / bare LitServe, 1+1 processes",
        "mllib loadtest / wrk, c=8",
        "mllib loadtest / wrk, c=64",
        "mllib prod, inline, 1 replica(s) / bare LitServe, 1+1 processes",
        "mllib prod, worker, 1+1 processes / bare LitServe, 1+1 processes",
        "mllib prod, inline, 1 replica(s) / mllib prod, worker, 1+1 processes",
    }


def test_scale_benchmark_scales_rolls_out_and_rolls_back_with_no_failed_request():
    # Times are reported, not asserted (goals: README Performance, `bash scripts/bench.sh scale`).
    import os

    result = _run("scale.py", "--short", timeout=600)
    print(f"\nscale (short): {json.dumps(result)}")
    step = result["step"]
    assert step["replicas"] >= min(4, os.cpu_count() or 1)  # 16 in flight / 4 per replica
    assert step["decision_s"] is not None or step["replicas"] == 1
    assert result["steady"]["reversals"] <= 1
    assert result["scale_down"]["to"] == max(1, step["replicas"] - 1)
    assert result["promote"]["last_50_on_v2"] and result["rollback"]["canary_after_rollback"] == 0
    breach = result["breach"]
    # judged on enough of the canary's own requests (its window may begin before the breach, so
    # under load fewer than that may follow the breach itself)
    judged = re.search(r"over (\d+) requests in", breach["reason"])
    assert judged and int(judged[1]) >= 200 and "p99" in breach["reason"], breach
    assert breach["canary_requests"] > 0
    sticky = result["sticky"]
    assert sticky["rolled_back_by_the_judge"] == []  # the same model on both sides
    assert sticky["sticky_percent"] == 100 and 0 < sticky["on_candidate_percent"] < 100
    for phase in ("step", "steady", "scale_down", "promote", "rollback", "breach", "sticky"):
        assert result[phase]["failed"] == 0, (phase, result[phase])


def test_dashboard_benchmark_meets_its_cpu_and_memory_goals():
    result = _run("dashboard.py", "--short")
    print(f"\ndashboard (short): runs {result['runs']} run screen {result['run screen']}")
    assert result["rows_shown"] == 1000  # the window holds the newest 1,000 of them
    assert result["goals"]["RSS < 150 MB"], result["peak_rss_mb"]
    assert result["runs"]["cpu_ms_mean"] > 0 and result["run screen"]["cpu_ms_mean"] > 0


@pytest.mark.timeout(600)  # seven parts on two databases: over 300 s at a load average of 20
def test_server_benchmark_loses_nothing_and_shares_fairly(pg_cluster):
    # Rates and latencies are reported, not asserted: the full run (bash scripts/bench.sh
    # server) measures them beside MLflow's tracking server.
    result = _run(
        "server.py", "--short", "--no-agents", "--postgres", pg_cluster.url(), timeout=600
    )
    print(f"\nserver (short): {json.dumps(result['submissions'])}")
    for database in ("sqlite", "postgresql"):
        assert result["submissions"][database]["all_present"]
        day = result["day"][database]
        assert day["lost"] == 0 and day["present"] == day["submissions"]
        assert result["enqueue_to_claim"][database]["claimed"] == 20
        scheduler = result["scheduler"][database]  # each decision claimed one of the 2,000
        assert scheduler["claimed"] == scheduler["decisions"] == 100, scheduler
        fair = result["fair_share"][database]  # 20 claims each: one more or less is 5%
        assert fair["users"] == 20 and fair["max"] - fair["min"] <= 2, fair


def test_envs_benchmark_builds_with_uv_and_pip_and_times_the_cached_start():
    # Speeds are reported, not asserted: the full run (bash scripts/bench.sh envs) measures them.
    result = _run("envs.py", "--short")
    print(
        f"\nenvs (short): cold build {result['cold_build_s']}, cached {result['cached_resolution_s']}"
    )
    assert set(result["cold_build_s"]) == {"uv", "pip"}
    assert all(seconds > 0 for seconds in result["cold_build_s"].values())
    assert result["cached_resolution_s"]["median"] > 0 and result["train_s"]["venv"] > 0


def test_tune_benchmark_measures_dispatch_beside_optuna_and_parallel_trials():
    # Figures are reported, not asserted (speed goals live in the full run, README Performance).
    result = _run("tune.py", "--short")
    dispatch = result["dispatch"]
    print(f"\ntune (short): {json.dumps(dispatch)}")
    assert dispatch["optuna_optimize_ms_per_trial"] > 0 and dispatch["mllib_ms_per_trial"] > 0
    assert (
        dispatch["ratio"]
        == dispatch["mllib_ms_per_trial"] / dispatch["optuna_optimize_ms_per_trial"]
    )
    assert dispatch["cpu_ratio"] == (
        dispatch["mllib_cpu_ms_per_trial"] / dispatch["optuna_optimize_cpu_ms_per_trial"]
    )
    for row in result["process_runtime"].values():
        assert row["complete"] == row["trials"] and row["trials_per_s"] > 0
        # A worker process per trial: its CPU is counted (a Python start-up alone is > 5 ms).
        assert row["cpu_ms_per_trial"] > result["startup"]["python -c pass CPU ms"] > 5
    sklearn = result["sklearn"]
    assert sklearn["same_best_value"], sklearn  # the random sampler, same seed: the same trials
    assert len(sklearn["load_average"]) == 3
    assert set(result["startup"]) >= {"python -c pass ms", "run, process runtime CPU ms"}
