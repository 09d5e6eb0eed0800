"""A run's event stream: JSON lines the worker appends and the supervisor reads into the registry.

The worker never touches SQLite: it writes this file in its run folder, which is equally reachable
from a child process, a container (bind mount) or an agent host. Metrics are buffered and written
in batches by a background thread so logging costs the training loop well under a microsecond.

Each line is an object with `type` (one of the kinds below) and `ts`:

| type           | fields                                         | written when                       |
|----------------|------------------------------------------------|------------------------------------|
| `metric`       | name, value (metric_values.spell), step, seq   | log_metric (batched)               |
| `params`       | values, sources, secret (names)                | params resolved, before train()    |
| `phase`        | phase (train, save, evaluate)                  | each phase starts                  |
| `eval_metrics` | metrics                                        | evaluate() returned                |
| `model_saved`  | format                                         | the trained model is in the folder |
| `error`        | failure_class, message, traceback              | the run failed (worker or runtime) |
| `cancelled`    |                                                | the worker stopped on SIGTERM      |
| `environment`  | python, implementation, platform, machine,     | the worker started (gathered on a  |
|                | cpu, cpu_count, gpus, packages, packages_hash, | thread while the model loads)      |
|                | numeric_env, runtime, runtime_id, note         |                                    |
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from mllib.filetail import LineTail
from mllib.metric_values import spell

EVENTS_FILE = "events.jsonl"

METRIC = "metric"
PARAMS = "params"
PHASE = "phase"
EVAL_METRICS = "eval_metrics"
MODEL_SAVED = "model_saved"
ERROR = "error"
CANCELLED = "cancelled"
ENVIRONMENT = "environment"


class EventWriter:
    """Appends events to `path`; metrics are batched, every other event is written at once."""

    def __init__(self, path: Path, *, batch: int = 2000, interval_s: float = 1.0) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float, int, int, float]] = []
        self._batch = batch
        self._seq = 0
        self._closed = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(interval_s,), daemon=True
        )
        self._flusher.start()

    def metric(self, name: str, value: float, step: int) -> None:
        with self._lock:
            self._seq += 1
            self._pending.append((name, value, step, self._seq, time.time()))
            full = len(self._pending) >= self._batch
        if full:
            self.flush()

    def emit(self, kind: str, **fields: Any) -> None:
        """Write one non-metric event (params, phase, eval_metrics, error) right away."""
        line = orjson.dumps({"type": kind, "ts": time.time(), **fields}) + b"\n"
        with self._lock:
            self._write_pending()
            self._file.write(line)
            self._file.flush()

    def flush(self) -> None:
        with self._lock:
            self._write_pending()
            self._file.flush()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._file.write(
            b"".join(
                orjson.dumps(
                    {"type": METRIC, "name": n, "value": spell(v), "step": s, "seq": q, "ts": t}
                )
                + b"\n"
                for n, v, s, q, t in pending
            )
        )

    def _flush_periodically(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        self._file.close()


class EventReader:
    """Reads complete new lines from an events file, remembering how far it got
    (mllib.filetail: a half-written last line waits for the next read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines = LineTail(path)

    def read(self) -> Iterator[dict[str, Any]]:
        for line in self._lines.read_lines():
            if line.strip():
                yield orjson.loads(line)


def report_failure(events_file: Path, failure_class: str, message: str) -> None:
    """Report a failure outside the worker (a runtime that could not build or start it) as the
    worker reports its own: one `error` event, read by the supervisor like any other."""
    writer = EventWriter(events_file)
    try:
        writer.emit(ERROR, failure_class=failure_class, message=message, traceback=None)
    finally:
        writer.close()
