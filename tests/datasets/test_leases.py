"""Upload leases (a team server's uploads in flight) against the chunk store's collection, on a
real store in a temporary folder: a live lease keeps its chunks, a finished one does not, an
expired or torn one is removed and frees them, and the live versions are read under the lock."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from mllib.datasets.chunkstore import LocalChunkStore
from mllib.datasets.gc import LOCK_FILE, collect
from mllib.datasets.leases import Leases
from mllib.datasets.manifest import FILE, FileEntry, Manifest
from mllib.locks import FileLock


def chunk(store: LocalChunkStore, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store.put(data, digest)
    return digest


def test_a_lease_keeps_its_chunks_until_its_upload_is_finished(tmp_path: Path) -> None:
    store = LocalChunkStore(tmp_path / "datasets")
    pinned, loose = chunk(store, b"announced"), chunk(store, b"nobody's")
    leases = Leases.of(store)
    upload = leases.start("images", "ana", 3600)
    assert leases.pin(upload, "ana", [pinned])

    result = collect(store, set, tmp_path / "cache")
    assert (result.chunks, result.skipped) == (1, False)
    assert store.missing([pinned, loose]) == [loose]

    leases.finish(upload)
    assert collect(store, set, tmp_path / "cache").chunks == 1
    assert store.missing([pinned]) == [pinned]


def test_an_expired_or_torn_lease_is_removed_and_frees_its_chunks(tmp_path: Path) -> None:
    store = LocalChunkStore(tmp_path / "datasets")
    leases = Leases.of(store)
    old, fresh = chunk(store, b"abandoned"), chunk(store, b"in flight")
    abandoned = leases.start("a", "ana", 3600)
    leases.pin(abandoned, "ana", [old])
    live = leases.start("b", "bo", 3600)
    leases.pin(live, "bo", [fresh])
    past = time.time() - 3700
    os.utime(leases.root / f"{abandoned}.jsonl", (past, past))
    (leases.root / f"{'0' * 32}.jsonl").write_bytes(b'{"format":1,"upl')  # killed mid-write

    assert leases.any_expired()  # what a server's sweep asks before it collects
    collect(store, set, tmp_path / "cache")
    assert sorted(p.stem for p in leases.root.iterdir()) == [live]
    assert store.missing([old, fresh]) == [old]
    assert not leases.pin(abandoned, "ana", [old])  # its upload has to start again
    assert not leases.any_expired()  # the live lease alone is left: no sweep needed


def test_a_lease_is_pinned_only_by_its_own_user(tmp_path: Path) -> None:
    leases = Leases.of(LocalChunkStore(tmp_path / "datasets"))
    upload = leases.start("a", "ana", 3600)
    assert not leases.pin(upload, "bo", ["a" * 64])
    assert not leases.pin("f" * 32, "ana", ["a" * 64])  # no such upload
    assert not leases.pin("../../etc/passwd", "ana", ["a" * 64])
    assert leases.pinned() == set()


def test_collection_reads_the_live_versions_while_it_holds_the_lock(tmp_path: Path) -> None:
    """A version recorded before the collection took its lock is live to it: which versions
    are live is asked only once no upload can be between its check and its record."""
    store = LocalChunkStore(tmp_path / "datasets")
    data = chunk(store, b"a version's data")
    manifest = Manifest(FILE, (FileEntry("x.bin", 16, data, (data,)),))
    kept = chunk(store, manifest.to_bytes())
    asked: list[bool] = []

    def live() -> set[str]:
        upload = FileLock(store.root / LOCK_FILE, shared=True)
        asked.append(upload.acquire(0))  # an upload's lock: refused while the collection runs
        upload.release()
        return {kept}

    assert collect(store, live, tmp_path / "cache").chunks == 0
    assert asked == [False] and store.missing([kept, data]) == []
