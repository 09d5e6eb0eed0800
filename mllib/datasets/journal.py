"""The journal of an upload in progress: what it has stored so far, so running the same command
again after Ctrl-C, a crash or `kill -9` sends only what is missing.

One JSON line per event, appended with a single write to a file opened O_APPEND: a killed
process leaves at most a torn last line, which is cut off on the next open. The journal is keyed
by (dataset name, source), locked while in use, and deleted once the version is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mllib.errors import UsageError
from mllib.locks import FileLock

UPLOADS_DIR = "uploads"
FORMAT = 1
SYNC_INTERVAL_S = 1.0


class UploadJournal:
    """An open, locked journal. `records` holds what an earlier attempt wrote (header excluded)."""

    def __init__(
        self, path: Path, lock: FileLock, fd: int, header: dict[str, Any], records: list[dict]
    ) -> None:
        self.path = path
        self.lock = lock
        self.fd = fd
        self.header = header
        self.records = records
        self._synced = time.monotonic()

    @classmethod
    def open(cls, folder: Path, name: str, source: str, header: dict[str, Any]) -> UploadJournal:
        """Open (or start) the journal of uploading `source` as `name`.

        An earlier journal is kept only when its header equals `header` (same source, same
        validators); otherwise it is started afresh.
        """
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{name}\n{source}".encode()).hexdigest()[:32]
        path = folder / f"{key}.jsonl"
        lock = FileLock(path, record_pid=False)  # the journal's own lines are its content
        if not lock.acquire(0):
            pid = lock.holder()
            raise UsageError(
                f"Another upload of {name!r} from the same source is running"
                + (f" (process {pid})" if pid else ""),
                hint="Wait for it to finish, or stop it; running the same command later resumes it.",
            )
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except BaseException:
            lock.release()
            raise
        full = {"format": FORMAT, "name": name, **header}
        lines = _read_lines(fd)
        if lines and lines[0] == full:
            return cls(path, lock, fd, full, lines[1:])
        journal = cls(path, lock, fd, full, [])
        journal.restart()
        return journal

    def restart(self) -> None:
        """Forget what was journaled (the source changed, or a server cannot resume)."""
        os.ftruncate(self.fd, 0)
        self.records = []
        self._write(self.header, sync=True)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._write(record)

    def _write(self, record: dict[str, Any], sync: bool = False) -> None:
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        if sync or time.monotonic() - self._synced > SYNC_INTERVAL_S:
            os.fsync(self.fd)
            self._synced = time.monotonic()

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
        self.lock.release()

    def discard(self) -> None:
        """The upload is recorded (or abandoned on purpose): remove the journal."""
        self.path.unlink(missing_ok=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.lock.release()


def _read_lines(fd: int) -> list[dict]:
    """The journal's complete lines; a torn last line (a killed writer) is cut off the file."""
    size = os.fstat(fd).st_size
    raw = os.pread(fd, size, 0) if size else b""
    end = raw.rfind(b"\n") + 1
    if end != len(raw):
        os.ftruncate(fd, end)
    records = []
    for line in raw[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def pinned_chunks(folder: Path, max_age_s: float) -> Iterator[str]:
    """Chunks that interrupted uploads younger than `max_age_s` have stored (kept for resuming).

    Older journals are abandoned uploads: they are removed, and their chunks freed.
    """
    if not folder.is_dir():
        return
    for path in folder.glob("*.jsonl"):
        try:
            if time.time() - path.stat().st_mtime > max_age_s:
                path.unlink()
                continue
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "chunk" in record:
                yield record["chunk"]
            elif "file" in record:
                yield from record["file"]["chunks"]


def pending_uploads(folder: Path) -> list[dict[str, Any]]:
    """Interrupted uploads: `name`, `source`, `chunks` journaled so far, `started_at` (mtime)."""
    found = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            lines = path.read_bytes().splitlines()
            header = json.loads(lines[0]) if lines else {}
            started = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        chunks = sum(1 for line in lines[1:] if line.startswith(b'{"chunk"'))
        files = sum(1 for line in lines[1:] if line.startswith(b'{"file"'))
        found.append(
            {
                "name": header.get("name"),
                "source": header.get("source"),
                "chunks": chunks,
                "files": files,
                "updated_at": started,
            }
        )
    return found
