"""Checking, backing up and replacing the registry file as a whole.

A backup is taken with SQLite's online backup API while other commands go on using the
registry, and lands under its name only once whole. A registry is replaced (a restore, a
rebuild) by renaming the new file into place after moving the old one (with its -wal and -shm)
aside (`registry.db.damaged-TIME`, `registry.db.replaced-TIME`), never by writing over it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from mllib.filemodes import fsync_dir
from mllib.registry.health import RegistryError, check_file

SIDE_FILES = ("", "-wal", "-shm")
SHOWN_PROBLEMS = 5


def integrity(path: Path, *, busy_timeout_s: float = 60.0) -> list[str]:
    """What SQLite's integrity check finds wrong in the registry at `path` ([] when nothing);
    a file that is not a database, or an empty one beside run folders, is one problem."""
    try:
        check_file(path)
    except RegistryError as exc:
        return [exc.message]
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [f"{path}: {exc}"]
    problems = [r for r in rows if r != "ok"][:SHOWN_PROBLEMS]
    if not problems and "runs" not in tables and tables:
        problems = [f"{path} holds no runs table: it is not an mllib registry"]
    return problems


def backup(source: Path, dest: Path, *, busy_timeout_s: float = 60.0) -> Path:
    """Copy the registry at `source` to `dest` (0600) with SQLite's online backup API: other
    processes may go on writing meanwhile; `dest` appears only once whole."""
    problems = integrity(source, busy_timeout_s=busy_timeout_s)
    if problems:
        raise RegistryError(
            f"Not backing up a damaged registry: {problems[0]}",
            hint="`mllib doctor --repair` rebuilds it from the run folders first.",
        )
    dest = dest.expanduser().resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    _remove(tmp)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        src = sqlite3.connect(source, timeout=busy_timeout_s)
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            out.close()
            src.close()
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise
    return dest


def replace(path: Path, new: Path, *, label: str = "damaged") -> Path | None:
    """Put the registry file `new` in place of `path`, moving the current one (and its -wal and
    -shm) aside first as `NAME.LABEL-TIME`; returns where it went (None when there was none)."""
    aside = None
    if any(path.with_name(path.name + s).exists() for s in SIDE_FILES):
        aside = path.with_name(f"{path.name}.{label}-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.rename(path.with_name(path.name + suffix), aside.with_name(aside.name + suffix))
    os.replace(new, path)
    fsync_dir(path.parent)
    return aside


def restore(path: Path, source: Path) -> Path | None:
    """Make the backup `source` the registry at `path` (checked first; the current registry is
    moved aside, never overwritten); returns where the current one went."""
    source = source.expanduser()
    if not source.is_file():
        raise RegistryError(f"No backup at {source}", hint="Give the file `--backup` wrote.")
    problems = integrity(source)
    if problems:
        raise RegistryError(
            f"The backup {source} is damaged too: {problems[0]}",
            hint="Restore another backup, or rebuild from the run folders with `mllib doctor "
            "--repair`.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    _remove(tmp)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        src = sqlite3.connect(source)
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
            src.close()
        return replace(path, tmp, label="replaced")
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    for suffix in SIDE_FILES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)
