"""Leases of uploads in flight to a shared chunk store (a team server's): the chunks each upload
was told are stored, or sent, kept from `mllib data rm`'s collection until the upload records its
version or its lease runs out.

A lease is a file `leases/UPLOAD_ID.jsonl` under the chunk store: a header (the upload's user and
dataset name, how long the lease lasts unused) and one line per batch of chunks the upload relies
on. A batch is written before the server answers "I have these" or stores a chunk, under the
store's upload lock taken shared (mllib.datasets.gc.upload_lock); a collection takes that lock
exclusively, reads every lease, then deletes. So a chunk an upload relies on is either pinned when
the collection looks, or was deleted before the server looked (and is reported missing).

A lease unused for its `expire_s` (the server's `upload_expiry_h`) belongs to an abandoned upload
(a client gone, a server killed mid-upload): the next collection removes it and frees its chunks
(a team server runs one itself when it finds one: mllib.server.housekeeping).

>>> leases = Leases.of(store)  # doctest: +SKIP
>>> upload = leases.start("images", "ana", 86400)  # doctest: +SKIP
>>> leases.pin(upload, "ana", ["2cf24dba..."])  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.datasets.chunkstore import LocalChunkStore

LEASES_DIR = "leases"
FORMAT = 1
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Leases:
    """The leases of one chunk store (in its `leases/` folder)."""

    root: Path

    @classmethod
    def of(cls, store: LocalChunkStore) -> Leases:
        return cls(store.root / LEASES_DIR)

    def start(self, name: str, user: str, expire_s: float) -> str:
        """A new lease for an upload of dataset `name` by `user`; its id. Hold the upload lock
        (a collection takes a lease it finds without its header for a torn one)."""
        upload = secrets.token_hex(16)
        self.root.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "upload": upload, "name": name, "user": user}
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._path(upload), flags, 0o600)
        try:
            os.write(fd, _line({**header, "expire_s": expire_s}))
        finally:
            os.close(fd)
        return upload

    def pin(self, upload: str, user: str, digests: Iterable[str]) -> bool:
        """Add `digests` to `user`'s lease `upload` (and renew it); False when there is no such
        lease (unknown, another user's, or expired and collected). Hold the upload lock."""
        if not UPLOAD_ID.match(upload):
            return False
        try:
            fd = os.open(self._path(upload), os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            header = _header(fd)
            if header is None or header.get("user") != user:
                return False
            os.write(fd, _line({"chunks": list(digests)}))
        finally:
            os.close(fd)
        return True

    def finish(self, upload: str) -> None:
        """The upload recorded its version (or gave up): its chunks are the version's now."""
        if UPLOAD_ID.match(upload):
            self._path(upload).unlink(missing_ok=True)

    def any_expired(self) -> bool:
        """Whether a lease has gone unused past its `expire_s` (an abandoned upload, whose
        chunks the next collection frees). Reads only each lease's header: cheap to ask often."""
        for path in self.root.glob("*.jsonl") if self.root.is_dir() else []:
            try:
                with path.open("rb") as f:
                    header = _record(f.readline())
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if _expired(header, age):
                return True
        return False

    def pinned(self) -> set[str]:
        """Every chunk a live lease pins; expired leases are removed on the way (their chunks
        are freed by the collection that asked). Hold the upload lock exclusively."""
        chunks: set[str] = set()
        for path in self.root.glob("*.jsonl") if self.root.is_dir() else []:
            try:
                lines = path.read_bytes().splitlines()
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            records = [_record(line) for line in lines]
            if _expired(records[0] if records else None, age):
                path.unlink(missing_ok=True)  # abandoned (or not a lease mllib wrote)
                continue
            for record in records[1:]:
                if record is not None and isinstance(record.get("chunks"), list):
                    chunks.update(str(d) for d in record["chunks"])
        return chunks

    def _path(self, upload: str) -> Path:
        return self.root / f"{upload}.jsonl"


def _line(record: dict[str, Any]) -> bytes:
    """One record as a line, written with a single write (O_APPEND: lines never interleave)."""
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def _record(line: bytes) -> dict[str, Any] | None:
    """A line's record; None for a torn line (a server killed mid-write)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _expired(header: dict[str, Any] | None, age: float) -> bool:
    """Whether a lease with this header, unused for `age` seconds, is gone (or not mllib's)."""
    expire_s = header.get("expire_s") if header else None
    return not isinstance(expire_s, int | float) or age > expire_s


def _header(fd: int) -> dict[str, Any] | None:
    first = os.pread(fd, 4096, 0).split(b"\n", 1)[0]
    return _record(first)
