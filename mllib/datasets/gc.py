"""Freeing what no dataset version needs: chunks, manifests, materialised folders, stale temp files.

Uploads hold a shared lock on the chunk store (a local upload for its whole length, a team
server's requests while they pin and store chunks: mllib.datasets.leases); collection takes it
exclusively and without waiting, so it never deletes a chunk an upload has just found present
and is about to rely on. Which versions are live is read under that lock too, so a version
recorded just before is kept. Chunks of interrupted uploads stay (they are what a resume skips)
until their journal is older than PENDING_DAYS; those of a server's uploads, until their lease
expires.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mllib.datasets.chunkstore import LocalChunkStore
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.journal import UPLOADS_DIR, pinned_chunks
from mllib.datasets.leases import Leases
from mllib.datasets.manifest import Manifest, ManifestError
from mllib.datasets.materialize import remove_materialized, remove_tree
from mllib.datasets.settings import PENDING_DAYS
from mllib.locks import file_lock, try_lock

LOCK_FILE = "gc.lock"
WHAT = "the dataset store's collection of unused chunks"
COLLECT_TIMEOUT_S = 600.0  # an upload waits this long for a collection (they are quick) to end
STALE_S = 3600  # a temporary folder this old belongs to no live process


@contextmanager
def upload_lock(store: LocalChunkStore) -> Iterator[None]:
    """Held (shared) by every upload: a collection waits until no upload runs."""
    store.root.mkdir(parents=True, exist_ok=True)
    with file_lock(store.root / LOCK_FILE, shared=True, timeout=COLLECT_TIMEOUT_S, what=WHAT):
        yield


@dataclass
class Collected:
    chunks: int = 0
    bytes: int = 0
    skipped: bool = False  # an upload was running: nothing was collected this time


def collect(
    store: LocalChunkStore, live: Callable[[], set[str]], cache: Path, wait_s: float = 0.0
) -> Collected:
    """Delete chunks and manifests no live version (`live()`: their manifest digests, read once
    the lock is held) or pending upload needs. `wait_s`: how long to wait for uploads' requests
    to let go of the lock (a server's hold it briefly; a local upload, for its whole length)."""
    result = Collected()
    if not store.root.is_dir():
        return result
    with try_lock(store.root / LOCK_FILE, timeout=wait_s) as held:
        if not held:
            result.skipped = True
            return result
        versions = live()
        keep = keep_set(store, versions)
        keep.update(pinned_chunks(store.root / UPLOADS_DIR, PENDING_DAYS * 86400))
        keep.update(Leases.of(store).pinned())
        for digest in list(store.digests()):
            if digest not in keep:
                result.bytes += store.delete(digest)
                result.chunks += 1
        shutil.rmtree(store.blobs.tmp, ignore_errors=True)  # writes cut off by a kill
        _collect_cache(cache, versions)
    return result


def keep_set(store: LocalChunkStore, live: set[str]) -> set[str]:
    """The manifests `live` and every chunk they name. A damaged live manifest stops it: which
    chunks that version needs cannot be known, so none may be freed (a missing one names none)."""
    keep = set(live)
    for digest in live:
        try:
            raw = store.read(digest)
        except FileNotFoundError:
            continue
        try:
            if hashlib.sha256(raw).hexdigest() != digest:
                raise ManifestError("its content does not match its sha256")
            keep.update(Manifest.from_bytes(raw).chunk_digests)
        except ManifestError as exc:
            raise DatasetChangedError(
                f"The manifest {digest[:16]} of a dataset version is damaged ({exc.message}): "
                "which chunks it needs cannot be told",
                hint="`mllib doctor --repair` moves it aside; then upload that version again.",
            ) from None
    return keep


def _collect_cache(cache: Path, live: set[str]) -> None:
    if not cache.is_dir():
        return
    for entry in cache.iterdir():
        digest = entry.name.split(".")[0]
        if len(digest) == 64 and digest not in live:
            remove_materialized(cache, digest)
        elif entry.name.startswith(".") and time.time() - entry.stat().st_mtime > STALE_S:
            remove_tree(entry)  # a materialisation cut off by a kill
