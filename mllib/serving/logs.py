"""Server logs: one JSON object per line (time, level, event, env, model version, ...) that Loki or
any log shipper reads as is, or short text lines for the dev server in a terminal.

Every process of a server writes whole lines to its stderr with one write() each; a deployment's
processes all share one log file opened for appending, so lines never interleave.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

JSON, TEXT = "json", "text"
# Loggers of the libraries a server runs on, routed to the same handler as ours.
LIBRARY_LOGGERS = ("litserve", "uvicorn", "uvicorn.error", "mllib")


_second = (-1, "")  # the last whole second formatted, and its text (one tuple: thread-safe)


def now_iso() -> str:
    """The time now in UTC, ISO 8601 to the millisecond (2025-01-31T12:00:00.123Z); formats
    each second once, since every request's log line needs it."""
    global _second
    now = time.time()
    second, text = _second
    if int(now) != second:
        second = int(now)
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}Z"


def write_line(fields: dict[str, Any], fmt: str) -> None:
    """Write one log line to stderr in one system call."""
    os.write(2, encode(fields, fmt))


def encode(fields: dict[str, Any], fmt: str) -> bytes:
    return (orjson.dumps(fields) if fmt == JSON else _text(fields).encode()) + b"\n"


class LineWriter:
    """Request log lines written to stderr by a background thread, many per system call.

    An API server must not wait on the disk: a write to a busy file system can take long
    enough to stall every request the event loop holds. Lines are written whole, in order,
    at most `interval_s` after they were logged; `close()` writes what is left.
    """

    def __init__(self, fmt: str, interval_s: float = 0.05) -> None:
        import collections
        import threading

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


def _text(fields: dict[str, Any]) -> str:
    if fields.get("event") == "request":
        key = fields.get("key_id") or "-"
        return (
            f"{fields['time'][11:23]} {fields['status']} {fields['method']} {fields['path']} "
            f"{fields['latency_ms']:.1f}ms key={key} id={fields['request_id']}"
        )
    text = f"{fields.get('time', '')[11:23]} {fields.get('level', 'info').upper():<7} {fields.get('message', '')}"
    if fields.get("traceback"):
        text += "\n" + fields["traceback"].rstrip()
    return text


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
        return _text(fields)


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


def pretty(line: bytes) -> str:
    """A server log line for people: requests and errors in one short line, other lines as they are."""
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line.decode("utf-8", "replace").rstrip("\n")
    if not isinstance(fields, dict):
        return line.decode("utf-8", "replace").rstrip("\n")
    return _text(fields)


def follow(path: Path, *, follow: bool, alive: Any = None, poll_s: float = 0.2) -> Iterator[bytes]:
    """The lines of a log file; with `follow`, then new lines as they come while `alive()` holds."""
    offset, pending = 0, b""
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
            offset += len(data)
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            yield from (line for line in lines if line)
        if not follow or (alive is not None and not alive()):
            if pending:
                yield pending
            return
        time.sleep(poll_s)
