"""Folders and files that may hold credentials: created 0700 / 0600 whatever the umask, and
tightened when mllib finds them looser (only those this user owns); written whole (the lock that
makes one process at a time change them is mllib.locks')."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed; make `path` itself 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it is absent; make it 0600."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    _tighten(path, PRIVATE_FILE)
    return path


def write_private(path: Path, text: str, *, durable: bool = True) -> None:
    """Make `path` a file holding `text` that only this user can read (0600 from its first byte).

    The text goes to a new temporary file beside it, which then replaces `path`: a reader (and a
    kill -9 of the writer) sees the old content or the new, never half, and a symlink planted at
    `path` is replaced, not written through. `durable` flushes it to disk first (fsync), so a
    power cut leaves the old content or the new too; without it (a cache, or a copy of rows a
    database keeps) a power cut may lose the last seconds of writes, or leave the file empty.
    """
    # mkstemp creates the file 0600 with O_EXCL | O_NOFOLLOW, under a name nobody can guess.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new name in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
