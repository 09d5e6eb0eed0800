"""Server log lines: the format a server writes and `mllib deploy logs` reads back. One JSON object
per line (time, level, event, env, model version, ...) that Loki or any log shipper reads as is, or
short text lines for the dev server in a terminal.

How a server's processes write them is server/logwriter.py; this module is what both sides share.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mllib.filetail import LineTail

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


def rotated(path: Path) -> list[Path]:
    """The rotated copies of a log that exist (`server.log.1` newest), oldest first."""
    found = []
    number = 1
    while (older := path.with_name(f"{path.name}.{number}")).exists():
        found.append(older)
        number += 1
    return found[::-1]


def rotate(path: Path, *, max_bytes: float, keep: int) -> bool:
    """Past `max_bytes`, copy the log to `NAME.1` (older copies shift up to `NAME.KEEP`) and
    empty it in place: its writers append through O_APPEND descriptors a rename would not move
    (logrotate's copytruncate; a line written in the instant between the copy and the truncation
    is lost). True when it rotated."""
    if max_bytes <= 0 or keep < 1:
        return False
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    path.with_name(f"{path.name}.{keep}").unlink(missing_ok=True)
    for number in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{number + 1}"))
    partial = path.with_name(f"{path.name}.1.partial")
    with open(path, "rb") as source, open(partial, "wb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
        os.truncate(path, 0)
    partial.rename(path.with_name(f"{path.name}.1"))
    return True


def line_time(line: bytes) -> str | None:
    """A JSON log line's `time` (ISO 8601 UTC, so times compare as text); None for other lines."""
    if not line.startswith(b"{"):
        return None
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = fields.get("time") if isinstance(fields, dict) else None
    return value if isinstance(value, str) else None


def follow(
    path: Path,
    *,
    follow: bool,
    alive: Any = None,
    poll_s: float = 0.2,
    tail: int | None = None,
    since: str | None = None,
) -> Iterator[bytes]:
    """The lines of a log file, its rotated copies first: only the last `tail` of them, and
    only those logged at or after `since` (ISO 8601 UTC; a line without a time goes with the
    line before it). With `follow`, then new lines as they come while `alive()` holds, carried
    across a rotation (what was not read yet is in `NAME.1`)."""
    last: collections.deque[bytes] = collections.deque(maxlen=tail or 1)
    offset, pending = 0, b""
    history = _since(_written(path, rotated(path)), since)
    for line in history:
        if isinstance(line, int):  # the current file's length: following starts there
            offset = line
        elif line.endswith(b"\n") or not follow:
            line = line.rstrip(b"\n")
            if tail is None:
                yield line
            elif tail:
                last.append(line)
        else:
            pending = line  # being written: following finishes it
    yield from last if tail else ()
    following = LineTail(path, offset)
    following.partial = pending
    while follow and (alive is None or alive()):
        time.sleep(poll_s)
        yield from (line for line in following.read_lines() if line)
    if rest := following.rest():
        yield rest


def _written(path: Path, older: list[Path]) -> Iterator[bytes | int]:
    """Every line of the rotated copies then of the log (newlines kept), then the log's length."""
    for each in older:
        with open(each, "rb") as handle:
            yield from handle
    offset = 0
    if path.exists():
        with open(path, "rb") as handle:
            for line in handle:
                offset += len(line)
                yield line
    yield offset


def _since(lines: Iterator[bytes | int], since: str | None) -> Iterator[bytes | int]:
    """The lines at or after `since`; a line without a time of its own (a traceback's) goes
    with the line before it."""
    showing = since is None
    for line in lines:
        if isinstance(line, bytes) and line.strip():
            if since is not None and (stamp := line_time(line)) is not None:
                showing = stamp >= since
            if showing:
                yield line
        elif isinstance(line, int):
            yield line


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
