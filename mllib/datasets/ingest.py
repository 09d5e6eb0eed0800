"""Uploading a local file or folder into the chunk store, resuming from an interrupted attempt.

Files an earlier attempt finished (same size and mtime) are taken from its journal without being
read again; a file it was cut off in is read again, and chunks already in the store are skipped,
so only what is missing is written.
"""

from __future__ import annotations

import os

from mllib.datasets.chunker import Chunker, Pipeline, TransferStats, read_full
from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.format import human_bytes
from mllib.datasets.journal import UploadJournal
from mllib.datasets.manifest import CHUNK_SIZE, FileEntry
from mllib.datasets.progress import Progress
from mllib.datasets.scan import SourceFile
from mllib.errors import UsageError


def ingest_files(
    store: ChunkStore,
    files: list[SourceFile],
    journal: UploadJournal,
    progress: Progress,
    stats: TransferStats,
    label: str,
) -> list[FileEntry]:
    """Store every file's chunks; returns their manifest entries, in the order given."""
    finished = {r["file"]["path"]: r for r in journal.records if "file" in r}
    resumable = {f.rel: _resumable(store, f, finished.get(f.rel)) for f in files}
    reused = sum(f.size for f in files if resumable[f.rel])
    if reused:
        count = sum(1 for e in resumable.values() if e)
        progress.note(
            f"Resuming an interrupted upload: {count} file(s), {human_bytes(reused)} already done"
        )
    progress.start(label, sum(f.size for f in files), reused)
    entries: list[FileEntry] = []

    def on_chunk(digest: str, offset: int, size: int, stored: bool) -> None:
        if stored:
            journal.append({"chunk": digest})
        progress.advance(size)

    with Pipeline() as pipe:
        for source in files:
            done = resumable[source.rel]
            if done is not None:
                entries.append(done)
                stats.files_resumed += 1
                stats.bytes_resumed += source.size
                continue
            chunker = Chunker(store, stats, pipe, on_chunk)
            _read_into(source, chunker, pipe)
            entry = chunker.entry(source.rel, source.executable)
            _check_unchanged(source, chunker.size)
            journal.append({"file": entry.as_dict(), "mtime_ns": source.mtime_ns})
            entries.append(entry)
    return entries


def _read_into(source: SourceFile, chunker: Chunker, pipe: Pipeline) -> None:
    try:
        handle = open(source.path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(f"Cannot read {source.rel}: {exc.strerror}") from None
    with handle:
        _advise_sequential(handle.fileno())
        while True:
            buffer = pipe.take()
            n = read_full(handle, memoryview(buffer))
            if not n:
                pipe.give(buffer)
                return
            chunker.add(memoryview(buffer)[:n], buffer)
            if n < CHUNK_SIZE:
                return


def _resumable(store: ChunkStore, source: SourceFile, record: dict | None) -> FileEntry | None:
    """The entry an earlier attempt journaled for this file, if the file and its chunks are unchanged."""
    if record is None or record.get("mtime_ns") != source.mtime_ns:
        return None
    data = record["file"]
    if data["size"] != source.size or store.missing(data["chunks"]):
        return None
    return FileEntry(
        data["path"], data["size"], data["sha256"], tuple(data["chunks"]), source.executable
    )


def _check_unchanged(source: SourceFile, read: int) -> None:
    st = os.stat(source.path)
    if read != source.size or st.st_size != source.size or st.st_mtime_ns != source.mtime_ns:
        raise DatasetChangedError(
            f"{source.rel} changed while it was being uploaded",
            hint="Upload again once the file is complete; what was stored is reused.",
        )


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
