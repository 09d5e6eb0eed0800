"""Where dataset chunks and manifests live, behind the small interface a shared server or an
S3-compatible object store can implement later.

The local implementation is a LocalBlobStore of its own under the project's store
(`.mllib/store/datasets/`): the same content-addressed layout as models and code, kept apart so
that removing a dataset can free its chunks without any risk to model or artifact blobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from mllib.store import LocalBlobStore

DATASETS_DIR = "datasets"


class ChunkStore(Protocol):
    """Content-addressed chunks (and manifests), named by their sha256.

    >>> store = LocalChunkStore(Path(".mllib/store/datasets"))  # doctest: +SKIP
    >>> store.put(b"hello", "2cf24dba...")  # doctest: +SKIP
    True
    >>> store.missing(["2cf24dba...", "ffff..."])  # doctest: +SKIP
    ['ffff...']
    """

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The digests this store lacks, in the order given (one round trip for a remote store)."""

    def size(self, digest: str) -> int | None:
        """The stored size of a chunk, or None when absent."""

    def put(self, data: bytes | memoryview, digest: str) -> bool:
        """Store bytes the caller has just hashed to `digest`; False when already present."""

    def read(self, digest: str) -> bytes: ...


class LocalChunkStore:
    """A ChunkStore in a local folder, plus what only a local store can do (list, delete)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = LocalBlobStore(self.root)

    def missing(self, digests: Iterable[str]) -> list[str]:
        return [d for d in digests if not self.blobs.has(d)]

    def size(self, digest: str) -> int | None:
        try:
            return self.blobs.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def put(self, data: bytes | memoryview, digest: str) -> bool:
        if self.blobs.has(digest, memoryview(data).nbytes):  # a torn chunk is written again
            return False
        self.blobs.put_bytes(data, sha256=digest)
        return True

    def read(self, digest: str) -> bytes:
        return self.blobs.get_bytes(digest)

    def path(self, digest: str) -> Path:
        return self.blobs.path(digest)

    def digests(self) -> Iterator[str]:
        """Every stored digest (for garbage collection)."""
        return self.blobs.digests()

    def delete(self, digest: str) -> int:
        """Remove a chunk; returns the bytes freed."""
        path = self.blobs.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size


def dataset_store(store_root: Path) -> LocalChunkStore:
    """The chunk store of a project whose store is at `store_root` (Workspace.project.store_path)."""
    return LocalChunkStore(Path(store_root) / DATASETS_DIR)
