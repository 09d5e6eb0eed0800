"""Cost per metric point: mllib's log_metric (call, and end to end into SQLite) vs MLflow's.

    python benchmarks/metric_logging.py --impl mllib  [--points 100000] [--json]
    python benchmarks/metric_logging.py --impl mlflow [--points 100000] [--per-call-points 1000]

mllib is measured as a run sees it: log_metric() appends to the buffered event stream (the
training loop's cost), then the supervisor's recorder ingests the points into the registry
(`end_to_end` includes both). MLflow uses a SQLite backend: log_metric() per point (measured on
--per-call-points points, since each costs milliseconds) and log_batch() in batches of 1000.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def bench_mllib(points: int, folder: Path) -> dict[str, float]:
    from mllib import tracking
    from mllib.protocol.events import EVENTS_FILE, EventWriter
    from mllib.registry import Registry
    from mllib.registry.runs import RunRecord, create_run, now
    from mllib.runs.recorder import Recorder

    registry = Registry.open(folder / "registry.db")
    create_run(
        registry,
        RunRecord(id="bench", model="bench", action="train", status="running", created_at=now()),
        {},
        {},
    )
    writer = EventWriter(folder / EVENTS_FILE)
    tracking._set_active(tracking.ActiveRun("bench", folder, writer))
    start = time.perf_counter()
    for i in range(points):
        tracking.log_metric("loss", 1.0 / (i + 1), step=i)
    writer.close()
    logged = time.perf_counter() - start
    tracking._set_active(None)
    recorder = Recorder(registry, "bench", folder / EVENTS_FILE)
    start = time.perf_counter()
    recorder.poll()
    ingested = time.perf_counter() - start
    count = registry.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    assert count == points, f"recorded {count} of {points} points"
    return {
        "log_metric_us_per_point": logged / points * 1e6,
        "ingest_us_per_point": ingested / points * 1e6,
        "end_to_end_us_per_point": (logged + ingested) / points * 1e6,
        "points": points,
    }


def bench_mlflow(points: int, per_call_points: int, folder: Path) -> dict[str, float]:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    client = mlflow.tracking.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metric("warmup", 0.0)
        start = time.perf_counter()
        for i in range(per_call_points):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        per_call = (time.perf_counter() - start) / per_call_points
        stamp = int(time.time() * 1000)
        start = time.perf_counter()
        for first in range(0, points, 1000):
            batch = [
                Metric("batched", 1.0 / (i + 1), stamp, i)
                for i in range(first, min(points, first + 1000))
            ]
            client.log_batch(run.info.run_id, metrics=batch)
        batched = (time.perf_counter() - start) / points
    return {
        "log_metric_us_per_point": per_call * 1e6,
        "log_batch_us_per_point": batched * 1e6,
        "points": points,
        "per_call_points": per_call_points,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["mllib", "mlflow"], required=True)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--per-call-points", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.impl == "mllib":
            result = bench_mllib(args.points, Path(tmp))
        else:
            result = bench_mlflow(args.points, args.per_call_points, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(
                f"{args.impl} {key}: {value:.2f}"
                if isinstance(value, float)
                else f"{args.impl} {key}: {value}"
            )


if __name__ == "__main__":
    main()
