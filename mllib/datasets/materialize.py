"""Turning a stored version back into files a run can read: once per version, read-only, verified.

A version is written into a fresh temporary folder (every chunk's hash checked, every path
checked to stay inside), made read-only, and renamed into `<cache>/<sha256>` only when whole; a
stamp beside it records each file's size and mtime so a later run can trust it with one stat per
file, and rebuild it if anything was touched. Works with any ChunkStore, so an agent host can
materialise from its own chunk cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.manifest import FILE, Manifest, safe_relative
from mllib.datasets.progress import NoProgress, Progress
from mllib.locks import file_lock

FILE_MODE, EXEC_MODE, DIR_MODE = 0o444, 0o555, 0o555
MATERIALIZE_TIMEOUT_S = 3600.0  # a large version takes minutes to write


def load_manifest(store: ChunkStore, digest: str) -> Manifest:
    """A version's manifest, checked against its digest and for safe paths."""
    try:
        raw = store.read(digest)
    except FileNotFoundError:
        raise DatasetChangedError(
            f"The manifest {digest[:16]} is missing from the dataset store",
            hint="Upload the dataset again.",
        ) from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise DatasetChangedError(f"The manifest {digest[:16]} in the dataset store is damaged")
    return Manifest.from_bytes(raw)


def data_path(cache: Path, digest: str, kind: str, entry: str | None) -> Path:
    """What a run's env variable points at: the file of a one-file version, else the folder."""
    root = cache / digest
    return root / entry if kind == FILE and entry else root


def materialize(
    store: ChunkStore,
    digest: str,
    cache: Path,
    progress: Progress | None = None,
    label: str | None = None,
) -> Path:
    """The read-only folder holding version `digest`'s files, built if absent or touched."""
    target, stamp = cache / digest, cache / f"{digest}.ok"
    if _intact(target, stamp):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Only one process materialises a version at a time; the others wait, then reuse it.
    what = f"the copy of {label or 'dataset ' + digest[:12]} another run is writing"
    with file_lock(cache / f"{digest}.lock", timeout=MATERIALIZE_TIMEOUT_S, what=what):
        if _intact(target, stamp):
            return target
        manifest = load_manifest(store, digest)
        stamp.unlink(missing_ok=True)
        remove_tree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache))
        try:
            progress = progress or NoProgress()
            progress.start(f"Preparing {label or 'dataset ' + digest[:12]}", manifest.size)
            listing = _write(store, manifest, tmp, progress)
            _seal_folders(tmp)
            os.rename(tmp, target)
            os.chmod(target, DIR_MODE)
        except BaseException:
            remove_tree(tmp)
            raise
        _write_stamp(stamp, listing)
    return target


def _write(
    store: ChunkStore, manifest: Manifest, root: Path, progress: Progress
) -> dict[str, list[int]]:
    listing: dict[str, list[int]] = {}
    for entry in manifest.files:
        target = root.joinpath(*safe_relative(entry.path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root.resolve()):
            raise DatasetChangedError(f"Dataset path {entry.path!r} leaves its folder")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o600)
        try:
            for chunk in entry.chunks:
                data = store.read(chunk)
                if hashlib.sha256(data).hexdigest() != chunk:
                    raise DatasetChangedError(
                        f"A chunk of {entry.path} is damaged in the dataset store",
                        hint="Upload the dataset again to repair it.",
                    )
                _write_all(fd, data)
                progress.advance(len(data))
            os.fchmod(fd, EXEC_MODE if entry.executable else FILE_MODE)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if st.st_size != entry.size:
            raise DatasetChangedError(f"{entry.path} came out {st.st_size} bytes, not {entry.size}")
        listing[entry.path] = [st.st_size, st.st_mtime_ns]
    return listing


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _seal_folders(root: Path) -> None:
    for dirpath, _, _ in os.walk(root, topdown=False):
        if Path(dirpath) != root:
            os.chmod(dirpath, DIR_MODE)


def _write_stamp(stamp: Path, listing: dict[str, list[int]]) -> None:
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(listing, separators=(",", ":")))
    os.replace(tmp, stamp)


def _intact(target: Path, stamp: Path) -> bool:
    """Whether a materialised version is complete and untouched (one stat per file)."""
    try:
        if target.is_symlink() or not target.is_dir():
            return False
        listing = json.loads(stamp.read_text())
        for rel, (size, mtime_ns) in listing.items():
            st = os.stat(target / rel, follow_symlinks=False)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_size != size
                or st.st_mtime_ns != mtime_ns
                or st.st_mode & 0o222
            ):
                return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def remove_tree(path: Path) -> None:
    """Delete a materialised (read-only) folder."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(path)


def remove_materialized(cache: Path, digest: str) -> None:
    """Forget a materialised version (its folder, stamp and lock)."""
    (cache / f"{digest}.ok").unlink(missing_ok=True)
    remove_tree(cache / digest)
    (cache / f"{digest}.lock").unlink(missing_ok=True)
