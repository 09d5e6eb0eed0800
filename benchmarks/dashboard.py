"""Dashboard benchmark: the cost of one refresh with a large registry and busy runs.

    python benchmarks/dashboard.py            # 10,000 runs; 5 runs logging 1,000 points/s each
    python benchmarks/dashboard.py --short    # 1,000 runs; 2 runs logging 200 points/s, as the suite runs it

A registry gets `--runs` finished runs (a few metric points each), then `--active` real runs
(`mllib train --detach`, process runtime) each log `--rate` points a second. The dashboard
(`mllib.dashboard.app.DashboardApp`, headless at 160x48, the runs table showing the metric those
runs log) then refreshes `--refreshes` times, 0.25 s apart, on the Runs pane and on the run
screen of one active run. Each refresh is measured as this process's CPU time (user+sys) from
the poll until the screen has been redrawn. Goals: < 50 ms of CPU per refresh (mean and p95),
and the process's peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"cpu_ms_per_refresh": 50.0, "rss_mb": 150.0}
LOAD_MODEL = """
import math
import time

import mllib


class Load:
    def __init__(self):
        self.rate = mllib.Param(1000)
        self.seconds = mllib.Param(60.0)

    def train(self):
        start = time.time()
        i = 0
        while time.time() - start < self.seconds:
            target = int((time.time() - start) * self.rate)
            while i < target:
                mllib.log_metric("loss", math.exp(-i / 5000), step=i)
                i += 1
            time.sleep(0.01)

    def predict(self, request):
        return 0
"""


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries a parent's
    peak across fork and exec into it, so under pytest it reported the test process's memory."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: this benchmark needs Linux")


def seed(root: Path, runs: int) -> None:
    """`runs` finished runs, three metric points each, written in one transaction."""
    from mllib.registry.metrics import insert_points
    from mllib.registry.runs import RunRecord, create_run
    from mllib.workspace import Workspace

    (root / "mllib.toml").write_text('name = "bench"\n')
    (root / "load.py").write_text(LOAD_MODEL)
    reg = Workspace.find(root).registry
    with reg.transaction():
        for n in range(runs):
            created = f"2026-01-{1 + n // 5000:02d}T00:00:00.{n % 1_000_000:06d}Z"
            record = RunRecord(
                f"seed{n:08d}", f"model{n % 7}", "train", "succeeded", created,
                runtime="process", host="local", user="bench", started_at=created, ended_at=created,
            )  # fmt: skip
            create_run(reg, record, {"learning_rate": 0.01, "epochs": n % 10}, {})
            insert_points(
                reg, record.id, [(i + 1, "loss", i, 1.0 / (i + 1), 0.0) for i in range(3)]
            )
    reg.close()


def start_runs(root: Path, count: int, rate: int, seconds: float) -> list[str]:
    ids = []
    for _ in range(count):
        result = subprocess.run(
            [sys.executable, "-m", "mllib", "train", "load.py", "--runtime", "process",
             "--detach", f"--rate={rate}", f"--seconds={seconds}"],
            cwd=root, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        ids.append(result.stdout.strip().splitlines()[-1])
    return ids


def wait_logging(root: Path, ids: list[str], timeout: float = 60) -> None:
    from mllib.registry.metrics import metric_names
    from mllib.workspace import Workspace

    reg = Workspace.find(root).registry
    deadline = time.monotonic() + timeout
    while not all(metric_names(reg, run_id) for run_id in ids):
        if time.monotonic() > deadline:
            raise SystemExit("the load runs did not start logging in time")
        time.sleep(0.2)
    reg.close()


async def measure(root: Path, active: list[str], refreshes: int) -> dict:
    from mllib.dashboard.app import DashboardApp
    from mllib.dashboard.data import DashboardData
    from mllib.workspace import Workspace

    app = DashboardApp(DashboardData(Workspace.find(root)), metric="loss", refresh_s=3600)
    results = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        for name in ("runs", "run screen"):
            if name == "run screen":
                app.open_run(active[0])
                await pilot.pause()
            samples = []
            for _ in range(refreshes):
                await asyncio.sleep(0.25)
                before = time.process_time()
                app.refresh_data()
                await pilot.pause()
                samples.append((time.process_time() - before) * 1000)
            samples.sort()
            results[name] = {
                "cpu_ms_mean": round(statistics.mean(samples), 2),
                "cpu_ms_p95": round(samples[int(len(samples) * 0.95) - 1], 2),
                "cpu_ms_max": round(samples[-1], 2),
            }
        results["rows_shown"] = len(app.runs.rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="points/s each active run logs")
    parser.add_argument("--refreshes", type=int, default=40)
    parser.add_argument("--short", action="store_true", help="small sizes (the test suite)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.short:
        args.runs, args.active, args.rate, args.refreshes = 1000, 2, 200, 10
    os.environ.setdefault("NO_COLOR", "1")
    with tempfile.TemporaryDirectory(prefix="mllib-bench-dash-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        seed(root, args.runs)
        seed_s = time.perf_counter() - started
        seconds = 30.0 + args.refreshes * 0.6
        ids = start_runs(root, args.active, args.rate, seconds)
        try:
            wait_logging(root, ids)
            results = asyncio.run(measure(root, ids, args.refreshes))
        finally:
            for run_id in ids:
                subprocess.run(
                    [sys.executable, "-m", "mllib", "runs", "cancel", run_id],
                    cwd=root, capture_output=True, timeout=120,
                )  # fmt: skip
    rss_mb = peak_rss_mb()
    worst = max(
        max(r["cpu_ms_mean"], r["cpu_ms_p95"]) for k, r in results.items() if k != "rows_shown"
    )
    report = {
        "runs": args.runs,
        "active_runs": args.active,
        "points_per_s_each": args.rate,
        "seed_s": round(seed_s, 1),
        **results,
        "peak_rss_mb": round(rss_mb, 1),
        "goals": {
            "CPU per refresh < 50 ms": worst < GOALS["cpu_ms_per_refresh"],
            "RSS < 150 MB": rss_mb < GOALS["rss_mb"],
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.runs:,} runs, {args.active} active logging {args.rate:,} points/s each")
    for name in ("runs", "run screen"):
        r = results[name]
        print(
            f"  {name:<11} CPU per refresh: mean {r['cpu_ms_mean']} ms, p95 {r['cpu_ms_p95']} ms, max {r['cpu_ms_max']} ms"
        )
    print(f"  peak RSS: {report['peak_rss_mb']} MB")
    for goal, met in report["goals"].items():
        print(f"  {'met' if met else 'MISSED'}: {goal}")


if __name__ == "__main__":
    main()
