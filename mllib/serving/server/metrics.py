"""Prometheus metrics that add up across all of a server's processes.

LitServe's own logger path never reaches /metrics (its values land in one logger process), and a
default registry in each API server only counts that process's requests. So every process writes
to prometheus_client's multiprocess files in the server's own metrics folder, and /metrics adds
them up: HTTP metrics from the API servers, predict timings from the workers.
`PROMETHEUS_MULTIPROC_DIR` must be set before prometheus_client is imported (`use_dir`).
The control plane reads them back from outside with control/scrape.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mllib.serving.counters import LATENCY_BUCKETS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Every status /predict can answer and every reason a request did not succeed, each series
# present at 0 from the start: rate() and increase() need an earlier sample, so a counter born
# at 1 would hide the first request, the first refusal or the first error.
STATUSES = (200, 400, 401, 403, 405, 409, 413, 422, 429, 500, 503, 504)
REASONS = (
    "bad_request", "unauthorized", "forbidden", "method", "too_large", "rate_limited",
    "predict_error", "not_ready", "timeout",
)  # fmt: skip
LABELS = ("env", "model", "version", "variant")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def use_dir(path: Path, *, afresh: bool = True) -> None:
    """Keep this process's metrics in `path` (afresh: emptied first; a deployment's replicas
    and front share one folder, which its controller made); children inherit the setting."""
    if afresh:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    _values_with_cached_pid()


_pid = os.getpid()
_cached_values: Any = None


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _cached_pid() -> int:
    return _pid


def _values_with_cached_pid() -> None:
    """prometheus_client's multiprocess values ask os.getpid() on every increment, to notice a
    fork (a system call, five per request); they get the pid kept here instead, which
    os.register_at_fork renews in each forked child. Only before this process made any value:
    two value classes would map the same file twice."""
    global _cached_values
    from prometheus_client import values

    if values.ValueClass is not values.MutexValue and values.ValueClass is not _cached_values:
        _cached_values = values.ValueClass = values.MultiProcessValue(
            process_identifier=_cached_pid
        )


class HttpMetrics:
    """What an API server records per /predict request (children per status cached)."""

    def __init__(self, labels: dict[str, str]) -> None:
        from prometheus_client import Counter, Histogram

        self._labels = [labels[name] for name in LABELS]
        self.requests = Counter(
            "mllib_requests",
            "Requests to /predict, by HTTP status.",
            [*LABELS, "status"],
            registry=None,
        )
        self.errors = Counter(
            "mllib_request_errors",
            "Requests to /predict that did not succeed, by reason.",
            [*LABELS, "reason"],
            registry=None,
        )
        self.latency = Histogram(
            "mllib_request_duration_seconds",
            "Time from the request's arrival to its response, for /predict.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=None,
        ).labels(*self._labels)
        self._by_status: dict[int, Any] = {
            status: self.requests.labels(*self._labels, str(status)) for status in STATUSES
        }
        self._by_reason: dict[str, Any] = {
            reason: self.errors.labels(*self._labels, reason) for reason in REASONS
        }
        self._compared: dict[str, Any] | None = None

    def compared(self, differed: bool) -> None:
        """A shadow's answer compared with the live one's (only a shadow's metrics have it)."""
        if self._compared is None:
            from prometheus_client import Counter

            counter = Counter(
                "mllib_shadow_answers",
                "A shadow's answers, compared with the live version's: same or different.",
                [*LABELS, "outcome"],
                registry=None,
            )
            self._compared = {
                outcome: counter.labels(*self._labels, outcome) for outcome in ("same", "different")
            }
        self._compared["different" if differed else "same"].inc()

    def record(self, status: int, seconds: float, reason: str | None) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(*self._labels, str(status))
        child.inc()
        self.latency.observe(seconds)
        if reason:
            err = self._by_reason.get(reason)
            if err is None:
                err = self._by_reason[reason] = self.errors.labels(*self._labels, reason)
            err.inc()


class PredictMetrics:
    """What a predicting process records: how long the model's predict() took (for a request
    answered in a batch, the predict_batch() call it was part of), and the batch sizes."""

    def __init__(self, labels: dict[str, str]) -> None:
        from prometheus_client import Histogram

        self._labels = [labels[name] for name in LABELS]
        self.seconds = Histogram(
            "mllib_predict_duration_seconds",
            "Time spent in the model's predict(), or in the predict_batch() call a request was part of.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=None,
        ).labels(*self._labels)
        self._batch_sizes: Any = None  # made on the first batch: only batching models have it

    def batch(self, size: int) -> None:
        """Count one predict_batch() call of `size` requests."""
        if self._batch_sizes is None:
            from prometheus_client import Histogram

            self._batch_sizes = Histogram(
                "mllib_predict_batch_size",
                "Requests answered by one predict_batch() call.",
                LABELS,
                buckets=BATCH_BUCKETS,
                registry=None,
            ).labels(*self._labels)
        self._batch_sizes.observe(size)


def publish_info(labels: dict[str, str], run_id: str, deployment: str) -> None:
    """A constant series naming what this server serves (for dashboards joining on labels)."""
    from prometheus_client import Gauge

    Gauge(
        "mllib_model_info",
        "What this server serves.",
        [*LABELS, "run_id", "deployment"],
        multiprocess_mode="max",
        registry=None,
    ).labels(*(labels[name] for name in LABELS), run_id, deployment).set(1)


def render() -> bytes:
    """Prometheus text of every process's metrics, added up, and each live process's own CPU,
    memory and open files (labelled with its pid)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        registry.register(ProcessesCollector(Path(folder)))
    return generate_latest(registry)


class ProcessesCollector:
    """prometheus_client's ProcessCollector for every live process that writes into a metrics
    folder (its files are named after their pid: API servers, workers, replicas), one `pid`
    label each, since the multiprocess collector leaves process metrics out."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pids(self) -> list[int]:
        found = set()
        for path in self.folder.glob("*_*.db"):
            tail = path.stem.rsplit("_", 1)[-1]
            if tail.isdigit() and Path(f"/proc/{tail}").exists():
                found.add(int(tail))
        return sorted(found)

    def collect(self) -> Any:
        from prometheus_client import ProcessCollector
        from prometheus_client.metrics_core import Metric

        families: dict[str, Metric] = {}
        for pid in self.pids():
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return list(families.values())
