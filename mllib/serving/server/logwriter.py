"""How a server's processes write their log lines (the format is mllib.serving.logs).

Every process writes whole lines to its stderr with one write() each; a deployment's processes
all share one log file opened for appending, so lines never interleave. Request lines go through
a background writer, so an API server never waits on the disk; mllib's, LitServe's and uvicorn's
Python log records are formatted as the same lines.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

from mllib.serving.logs import JSON, encode, text_line

# Loggers of the libraries a server runs on, routed to the same handler as ours.
LIBRARY_LOGGERS = ("litserve", "uvicorn", "uvicorn.error", "mllib")


class LineWriter:
    """Request log lines written to stderr by a background thread, many per system call.

    An API server must not wait on the disk: a write to a busy file system can take long
    enough to stall every request the event loop holds. Lines are written whole, in order,
    at most `interval_s` after they were logged; `close()` writes what is left.
    """

    def __init__(self, fmt: str, interval_s: float = 0.05) -> None:
        self.fmt = fmt
        self.interval_s = interval_s
        self._lines: collections.deque[bytes] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mllib-log", daemon=True)
        self._thread.start()

    def write(self, fields: dict[str, Any]) -> None:
        self._lines.append(encode(fields, self.fmt))

    def _flush(self) -> None:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        if lines:
            os.write(2, b"".join(lines))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._flush()
        self._flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LineFormatter(logging.Formatter):
    """Python logging records as our JSON (or text) lines."""

    def __init__(self, fmt: str, static: dict[str, Any]) -> None:
        super().__init__()
        self.fmt = fmt
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "logger": record.name,
            "pid": record.process,
            **self.static,
            "message": record.getMessage(),
        }
        for key in ("error_id", "worker", "request_ids"):
            if hasattr(record, key):
                fields[key] = getattr(record, key)
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        if hasattr(record, "traceback"):
            fields["traceback"] = record.traceback
        if self.fmt == JSON:
            return orjson.dumps(fields).decode()
        return text_line(fields)


def configure(fmt: str, static: dict[str, Any], level: int = logging.INFO) -> None:
    """Send mllib's, LitServe's and uvicorn's log records to stderr as our lines (in this process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(fmt, static))
    for name in LIBRARY_LOGGERS:
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level)
        log.propagate = False


def uvicorn_log_config(fmt: str, static: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's dictConfig for the API servers: its records as our lines, access log off (we log requests)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "lines": {"()": LineFormatter, "fmt": fmt, "static": static},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
