"""Cutting bytes into fixed-size chunks: each hashed, stored only when the store lacks it.

The file's own sha256 is computed on a helper thread while the chunk's is computed here; hashlib
releases the GIL on large buffers, so the two hashes overlap and ingest runs near one hash pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.manifest import CHUNK_SIZE, FileEntry


@dataclass
class TransferStats:
    """What an upload wrote and what it found already stored."""

    chunks_stored: int = 0
    bytes_stored: int = 0
    chunks_skipped: int = 0
    bytes_skipped: int = 0
    files_resumed: int = 0  # files an interrupted upload had finished: taken from its journal
    bytes_resumed: int = 0


OnChunk = Callable[[str, int, bool], None]  # digest, size, newly stored


class Chunker:
    """Hashes and stores one file's chunks, in order; `entry()` gives its manifest entry."""

    def __init__(
        self,
        store: ChunkStore,
        stats: TransferStats,
        hasher: ThreadPoolExecutor,
        on_chunk: OnChunk | None = None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.hasher = hasher
        self.on_chunk = on_chunk
        self.whole = hashlib.sha256()
        self.chunks: list[str] = []
        self.size = 0

    def add(self, view: memoryview) -> str:
        """One whole chunk (CHUNK_SIZE bytes, or fewer for a file's last one)."""
        pending = self.hasher.submit(self.whole.update, view)
        digest = hashlib.sha256(view).hexdigest()
        try:
            stored = self.store.put(view, digest)
        finally:
            pending.result()
        nbytes = len(view)
        if stored:
            self.stats.chunks_stored += 1
            self.stats.bytes_stored += nbytes
        else:
            self.stats.chunks_skipped += 1
            self.stats.bytes_skipped += nbytes
        self.chunks.append(digest)
        self.size += nbytes
        if self.on_chunk:
            self.on_chunk(digest, nbytes, stored)
        return digest

    def replay(self, digest: str, data: bytes) -> None:
        """A chunk already stored by an interrupted transfer: count it into the file's hash only."""
        self.whole.update(data)
        self.chunks.append(digest)
        self.size += len(data)

    def entry(self, path: str, executable: bool = False) -> FileEntry:
        return FileEntry(path, self.size, self.whole.hexdigest(), tuple(self.chunks), executable)


class ChunkBuffer:
    """Collects a stream's pieces (of any size) into whole chunks for a Chunker."""

    def __init__(self, chunker: Chunker, chunk_size: int = CHUNK_SIZE) -> None:
        self.chunker = chunker
        self.buffer = bytearray(chunk_size)
        self.view = memoryview(self.buffer)
        self.filled = 0

    def feed(self, data: bytes) -> None:
        piece = memoryview(data)
        while piece:
            room = len(self.buffer) - self.filled
            take = piece[:room]
            self.view[self.filled : self.filled + len(take)] = take
            self.filled += len(take)
            piece = piece[len(take) :]
            if self.filled == len(self.buffer):
                self.chunker.add(self.view)
                self.filled = 0

    def close(self) -> None:
        """Store the last, partial chunk."""
        if self.filled:
            self.chunker.add(self.view[: self.filled])
            self.filled = 0


def read_full(handle: BinaryIO, view: memoryview) -> int:
    """Fill `view` from `handle` unless the file ends first; returns the bytes read."""
    filled = 0
    while filled < len(view):
        n = handle.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled
