"""Following a file that others append to: the one way mllib reads a log or an events file as it
grows (run output, worker events, a deployment's server.log, the dashboard's log pane).

A follower keeps its offset and the bytes just before it. A file emptied in place (rotated by
copy-and-truncate: the deployment controller rotates server.log so) no longer holds those bytes
there: what came after the offset is read from the copy, NAME.1, then the file from its start.
A file replaced by another (a new inode) is read from its start.

>>> tail = FileTail(run_dir / "output.log")  # doctest: +SKIP
>>> chunk = tail.read()  # what was appended since the last read (b"" when nothing)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

MARK_BYTES = 64  # the bytes before the offset checked at each read to notice a rotation
READ_LIMIT = 1 << 26  # at most this much per read (64 MiB): a reader never holds a whole log


class FileTail:
    """What was appended to `path` since the last `read()`, from `offset` on at first."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self._mark: bytes | None = None  # the bytes before `offset`, as last seen
        self._inode: int | None = None
        if offset > 0:  # what is there now is what was read: a rotation from now on shows
            try:
                with open(self.path, "rb") as handle:
                    self._inode = os.fstat(handle.fileno()).st_ino
                    self._mark = _bytes_before(handle, offset)
            except FileNotFoundError:
                pass

    def read(self, limit: int = READ_LIMIT) -> bytes:
        """New bytes (at most `limit`); b"" when there are none or the file does not exist."""
        try:
            with open(self.path, "rb") as handle:
                return self._read(handle, limit)
        except FileNotFoundError:
            return b""

    def _read(self, handle: BinaryIO, limit: int) -> bytes:
        inode = os.fstat(handle.fileno()).st_ino
        earlier = b""
        if self._inode is not None and inode != self._inode:
            self.offset = 0  # another file now: read it whole
        elif self._mark is not None and _bytes_before(handle, self.offset) != self._mark:
            earlier = self._rest_of_copy(limit)
            self.offset = 0
        self._inode = inode
        handle.seek(self.offset)
        fresh = handle.read(max(0, limit - len(earlier)))
        self.offset += len(fresh)
        self._mark = _bytes_before(handle, self.offset)
        return earlier + fresh

    def _rest_of_copy(self, limit: int) -> bytes:
        """What a copy-and-truncate rotation moved into NAME.1 past our offset."""
        try:
            with open(self.path.with_name(f"{self.path.name}.1"), "rb") as copy:
                copy.seek(self.offset)
                return copy.read(limit)
        except FileNotFoundError:
            return b""


class LineTail:
    """Whole new lines of a followed file (a half-written last line waits for the next read)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.tail = FileTail(path, offset)
        self.partial = b""

    def read_lines(self) -> list[bytes]:
        lines = (self.partial + self.tail.read()).split(b"\n")
        self.partial = lines.pop()
        return lines

    def rest(self) -> bytes:
        """The unfinished last line, taken (for a reader that stops)."""
        rest, self.partial = self.partial, b""
        return rest


def _bytes_before(handle: BinaryIO, offset: int) -> bytes | None:
    """The bytes just before `offset` (b"" at 0; None when the file is now shorter)."""
    start = max(0, offset - MARK_BYTES)
    handle.seek(start)
    found = handle.read(offset - start)
    return found if len(found) == offset - start else None
