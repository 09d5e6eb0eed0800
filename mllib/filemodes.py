"""Folders and files that may hold credentials: created 0700 / 0600 whatever the umask, and
tightened when mllib finds them looser (only those this user owns)."""

from __future__ import annotations

import os
import stat
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


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only this user can read (0600 from its first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE)  # an existing file keeps its mode otherwise
        handle.write(text)


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
