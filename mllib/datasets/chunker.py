"""Cutting bytes into fixed-size chunks: each hashed, stored only when the store lacks it.

Three stages overlap, each on its own thread, all releasing the GIL: reading and hashing the chunk
(the caller's thread), updating the whole file's sha256 (a hasher thread), and writing the chunk
into the store (a writer thread). A small pool of chunk buffers bounds memory (POOL x CHUNK_SIZE)
and makes the reader wait when writes fall behind.
"""

from __future__ import annotations

import hashlib
import mmap
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.manifest import CHUNK_SIZE, FileEntry

POOL = 3  # chunk buffers: one being read, one being written, one spare
Buffer = mmap.mmap


@dataclass
class TransferStats:
    """What an upload wrote and what it found already stored."""

    chunks_stored: int = 0
    bytes_stored: int = 0
    chunks_skipped: int = 0
    bytes_skipped: int = 0
    files_resumed: int = 0  # files an interrupted upload had finished: taken from its journal
    bytes_resumed: int = 0


OnChunk = Callable[
    [str, int, int, bool], None
]  # digest, offset, size, newly stored (on the writer)


class Pipeline:
    """The hasher and writer threads and the buffer pool; `with Pipeline() as pipe: ...`."""

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self.hasher = ThreadPoolExecutor(1, thread_name_prefix="mllib-hash")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="mllib-write")
        self._free: queue.Queue[Buffer] = queue.Queue()
        for _ in range(POOL):  # page-aligned, so the store can write them with O_DIRECT
            self._free.put(mmap.mmap(-1, chunk_size))
        self._pending: list[Future] = []
        self._failed = False  # after a failed write, later ones are skipped: chunks land in order

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.writer.shutdown(wait=True)  # writes in flight finish: each chunk is whole or absent
        self.hasher.shutdown(wait=True)

    def take(self) -> Buffer:
        """A free buffer; waits while the writer is behind, and raises what the writer raised."""
        while True:
            self._raise_failures()
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue

    def give(self, buffer: Buffer) -> None:
        self._free.put(buffer)

    def write(self, fn: Callable[[], None], buffer: Buffer | None) -> None:
        """Run `fn` on the writer thread, then hand `buffer` back to the pool."""

        def job() -> None:
            try:
                if not self._failed:
                    fn()
            except BaseException:
                self._failed = True
                raise
            finally:
                if buffer is not None:
                    self.give(buffer)

        self._pending.append(self.writer.submit(job))

    def drain(self) -> None:
        """Wait for every write; raise the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def settle(self) -> None:
        """Wait for every write, ignoring failures (on the way out of an error already raised)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()

    def _raise_failures(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()


class Chunker:
    """Hashes and stores one file's chunks, in order; `entry()` gives its manifest entry."""

    def __init__(
        self,
        store: ChunkStore,
        stats: TransferStats,
        pipe: Pipeline,
        on_chunk: OnChunk | None = None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.pipe = pipe
        self.on_chunk = on_chunk
        self.whole = hashlib.sha256()
        self.chunks: list[str] = []
        self.size = 0

    def add(self, view: memoryview, buffer: Buffer | None = None) -> str:
        """One whole chunk (CHUNK_SIZE bytes, or fewer for a file's last one), held in `buffer`
        (from the pipeline's pool, returned to it once written)."""
        pending = self.pipe.hasher.submit(self.whole.update, view)
        digest = hashlib.sha256(view).hexdigest()
        pending.result()
        offset = self.size
        self.chunks.append(digest)
        self.size += len(view)
        self.pipe.write(lambda: self._store(view, digest, offset), buffer)
        return digest

    def _store(self, view: memoryview, digest: str, offset: int) -> None:
        stored = self.store.put(view, digest)
        nbytes = len(view)
        if stored:
            self.stats.chunks_stored += 1
            self.stats.bytes_stored += nbytes
        else:
            self.stats.chunks_skipped += 1
            self.stats.bytes_skipped += nbytes
        if self.on_chunk:
            self.on_chunk(digest, offset, nbytes, stored)

    def replay(self, digest: str, data: bytes) -> None:
        """A chunk already stored by an interrupted transfer: count it into the file's hash only."""
        self.whole.update(data)
        self.chunks.append(digest)
        self.size += len(data)

    def entry(self, path: str, executable: bool = False) -> FileEntry:
        """The file's manifest entry, once all its chunks are written."""
        self.pipe.drain()
        return FileEntry(path, self.size, self.whole.hexdigest(), tuple(self.chunks), executable)


class ChunkBuffer:
    """Collects a stream's pieces (of any size) into whole chunks for a Chunker."""

    def __init__(self, chunker: Chunker) -> None:
        self.chunker = chunker
        self.buffer = chunker.pipe.take()
        self.filled = 0

    def feed(self, data: bytes) -> None:
        piece = memoryview(data)
        while piece:
            take = piece[: len(self.buffer) - self.filled]
            self.buffer[self.filled : self.filled + len(take)] = take
            self.filled += len(take)
            piece = piece[len(take) :]
            if self.filled == len(self.buffer):
                self.chunker.add(memoryview(self.buffer), self.buffer)
                self.buffer, self.filled = self.chunker.pipe.take(), 0

    def discard(self) -> None:
        """Drop a partial chunk (the stream failed); its buffer goes back to the pool."""
        self.chunker.pipe.give(self.buffer)
        self.filled = 0

    def close(self) -> None:
        """Store the last, partial chunk (or give the unused buffer back)."""
        if self.filled:
            self.chunker.add(memoryview(self.buffer)[: self.filled], self.buffer)
        else:
            self.chunker.pipe.give(self.buffer)
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
