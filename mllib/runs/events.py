"""A run's event stream: JSON lines the worker appends and the supervisor reads into the registry.

The worker never touches SQLite: it writes this file in its run folder, which is equally reachable
from a child process, a container (bind mount) or an agent host. Metrics are buffered and written
in batches by a background thread so logging costs the training loop well under a microsecond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from mllib.metric_values import spell

EVENTS_FILE = "events.jsonl"


class EventWriter:
    """Appends events to `path`; metrics are batched, every other event is written at once."""

    def __init__(self, path: Path, *, batch: int = 2000, interval_s: float = 1.0) -> None:
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float | None, int, int, float]] = []
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
                    {"type": "metric", "name": n, "value": spell(v), "step": s, "seq": q, "ts": t}
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
    """Reads complete new lines from an events file, remembering how far it got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next read
        self.offset += end
        for line in data[:end].splitlines():
            if line.strip():
                yield orjson.loads(line)
