"""Server log lines: the format a server writes and `mllib deploy logs` reads back. One JSON object
per line (time, level, event, env, model version, ...) that Loki or any log shipper reads as is, or
short text lines for the dev server in a terminal.

How a server's processes write them is server/logwriter.py; this module is what both sides share.
"""

from __future__ import annotations

import logging
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


def encode(fields: dict[str, Any], fmt: str) -> bytes:
    """One whole log line, newline included, in `fmt` (JSON or TEXT)."""
    return (orjson.dumps(fields) if fmt == JSON else text_line(fields).encode()) + b"\n"


def text_line(fields: dict[str, Any]) -> str:
    """A log line's fields as short text: a request on one line, anything else with its level."""
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


def pretty(line: bytes) -> str:
    """A server log line for people: requests and errors in one short line, other lines as they are."""
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line.decode("utf-8", "replace").rstrip("\n")
    if not isinstance(fields, dict):
        return line.decode("utf-8", "replace").rstrip("\n")
    return text_line(fields)


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
        for key in ("error_id", "worker", "request_ids", "key_id", "replica", "variant"):
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
