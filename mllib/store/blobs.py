"""Blobs named by the sha256 of their content, behind a small interface a server or S3 can implement.

Writes go to a temporary file in the store itself (so the rename never crosses filesystems,
wherever `MLLIB_STORE` is mounted), flushed to disk (fsync) before it is renamed into place, and
the folder after: a crash or power cut leaves either no blob or the whole blob under its name,
never a truncated one. A name alone is not trusted: `has()` checks the size where the caller
knows it (a blob of the wrong size is written again), and `verify()` hashes the content again
(`mllib doctor`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from mllib.filemodes import fsync_dir

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # a blob's name: one regex, not a loop over 64 chars

COPY_BUFFER = 1 << 20
DIRECT_ALIGN = 4096  # O_DIRECT writes whole, aligned blocks
DIRECT_MIN = 1 << 20  # below this a page-cache write is as cheap
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


class BlobStore(Protocol):
    """Where content-addressed bytes live.

    >>> store = LocalBlobStore(Path(".mllib/store"))  # doctest: +SKIP
    >>> blob = store.put_bytes(b"hello")  # doctest: +SKIP
    >>> store.get_bytes(blob.sha256)  # doctest: +SKIP
    b'hello'
    """

    def has(self, sha256: str, size: int | None = None) -> bool: ...
    def put_file(self, path: Path, *, move: bool = False) -> Blob: ...
    def put_bytes(self, data: bytes | memoryview, *, sha256: str | None = None) -> Blob: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def get_bytes(self, sha256: str) -> bytes: ...
    def copy_to(self, sha256: str, dest: Path) -> None: ...


class LocalBlobStore:
    """A BlobStore in a local folder: objects/ab/cdef... plus tmp/ for writes in progress."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"

    def _ensure(self) -> None:
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if _SHA256_HEX.fullmatch(sha256) is None:
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.objects / sha256[:2] / sha256[2:]

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Whether the blob is stored whole: its file exists, with `size` bytes when the caller
        knows the size (an empty file stands only for the empty blob)."""
        try:
            info = os.stat(self.path(sha256))
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        if size is not None:
            return info.st_size == size
        return info.st_size > 0 or sha256 == EMPTY_SHA256

    def _commit(self, tmp_path: Path, sha256: str, size: int) -> None:
        """Rename a written, fsynced temporary file into place, then make the rename durable.
        A blob already stored whole wins; one of the wrong size (a torn write) is replaced."""
        final = self.path(sha256)
        if self.has(sha256, size):
            tmp_path.unlink()
            return
        if not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            fsync_dir(self.objects)
        os.chmod(tmp_path, 0o444)
        os.replace(tmp_path, final)
        fsync_dir(final.parent)

    def put_file(self, path: Path, *, move: bool = False) -> Blob:
        """Store a file's content; with `move`, the file is moved in when it is on the store's
        filesystem (else copied, then removed)."""
        self._ensure()
        digest, size = hash_file(path)
        if self.has(digest, size):
            self._touch(digest)
            if move:
                path.unlink()
            return Blob(digest, size)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
        tmp_path = Path(tmp_name)
        try:
            if move and _same_filesystem(path, self.tmp):
                os.close(fd)
                os.replace(path, tmp_path)
                fsync_file(tmp_path)
            else:
                with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
                    shutil.copyfileobj(source, target, COPY_BUFFER)
                    target.flush()
                    os.fsync(target.fileno())
                if move:
                    path.unlink()
            self._commit(tmp_path, digest, size)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return Blob(digest, size)

    def put_bytes(self, data: bytes | memoryview, *, sha256: str | None = None) -> Blob:
        """Store bytes. A caller that has just hashed these exact bytes passes `sha256` to skip a rehash."""
        self._ensure()
        digest = sha256 or hashlib.sha256(data).hexdigest()
        size = memoryview(data).nbytes
        if self.has(digest, size):
            self._touch(digest)
        else:
            fd, tmp_name = tempfile.mkstemp(dir=self.tmp)
            try:
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._commit(Path(tmp_name), digest, size)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        return Blob(digest, size)

    def _touch(self, sha256: str) -> None:
        """Mark a blob stored again as just written: a collection that runs meanwhile (before
        the new run that reuses it is recorded) leaves it alone (`unused_for`)."""
        with contextlib.suppress(OSError):
            os.utime(self.path(sha256))

    def unused_for(self, sha256: str) -> float:
        """Seconds since the blob was last stored (written, or deduplicated); 0 when absent."""
        try:
            return max(0.0, time.time() - os.stat(self.path(sha256)).st_mtime)
        except FileNotFoundError:
            return 0.0

    def delete(self, sha256: str) -> int:
        """Remove a blob; the bytes freed (0 when it was not there)."""
        path = self.path(sha256)
        try:
            size = os.stat(path).st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def verify(self, sha256: str) -> bool:
        """Whether the stored content still hashes to its name (False when absent)."""
        try:
            return hash_file(self.path(sha256))[0] == sha256
        except FileNotFoundError:
            return False

    def digests(self) -> Iterator[str]:
        """Every stored digest."""
        if not self.objects.is_dir():
            return
        for prefix in os.scandir(self.objects):
            if prefix.is_dir() and len(prefix.name) == 2:
                for entry in os.scandir(prefix.path):
                    yield prefix.name + entry.name

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def get_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def copy_to(self, sha256: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(sha256), dest)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write `data` at the file's current position.

    A large, page-aligned buffer (dataset chunks come from mmap'd buffers) goes to the disk with
    O_DIRECT where the filesystem allows it: a blob is written once and read rarely, and copying
    it through the page cache costs more kernel time than writing it. Anything else (a small or
    unaligned buffer, tmpfs) is written through the page cache as usual.
    """
    view = memoryview(data).cast("B")
    head = len(view) - len(view) % DIRECT_ALIGN if len(view) >= DIRECT_MIN else 0
    if head and hasattr(os, "O_DIRECT"):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            while head:
                written = os.write(fd, view[:head])
                view, head = view[written:], head - written
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: unaligned, or no O_DIRECT here
                raise
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    while view:
        view = view[os.write(fd, view) :]


def fsync_file(path: Path) -> None:
    """Flush a file's content to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_filesystem(path: Path, folder: Path) -> bool:
    return os.stat(path).st_dev == os.stat(folder).st_dev


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter_chunks(handle):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def iter_chunks(handle: BinaryIO, size: int = COPY_BUFFER) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk
