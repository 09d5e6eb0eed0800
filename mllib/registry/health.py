"""When the registry file itself is the problem: damaged, emptied, locked too long, on a full disk.

Every such failure becomes one RegistryError (a system error, exit 3) naming the file and what to
do, instead of an sqlite3 traceback; a transaction it interrupts is rolled back whole. Opening
checks what is cheap to check, by stat alone: that an empty or missing registry is not about to
be started over on top of the run folders beside it. (The file itself is read only through
SQLite: closing another descriptor of a database cancels the POSIX locks SQLite holds on it in
this process, which can corrupt it; a file that is not a database is SQLite's NOTADB.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from mllib.errors import EXIT_SYSTEM, MllibError

FULL_BELOW = 256 * 1024  # bytes free under which a failed write is taken for a full disk
RUNS_DIR = "runs"  # beside the registry (Project.runs_dir)
REPAIR_HINT = (
    "Run `mllib doctor` to see what is wrong; `mllib doctor --repair` rebuilds the registry from "
    "the run folders, `mllib doctor --restore BACKUP` puts back a backup."
)


class RegistryError(MllibError):
    """The registry cannot be used right now: damaged, locked, on a full disk, unreadable."""

    exit_code = EXIT_SYSTEM
    failure_class = "system_error"


# Files a run folder holds once its run was recorded (a folder being prepared has only spec.json).
RECORDED = ("record.json", "events.jsonl", "output.log")


def run_folders(registry_path: Path, *, recorded: bool = False) -> list[Path]:
    """The run folders beside a registry (each holds the run's spec.json); with `recorded`,
    only those of runs the registry held (not a run being prepared right now)."""
    runs = registry_path.parent / RUNS_DIR
    if not runs.is_dir():
        return []
    folders = [p for p in runs.iterdir() if (p / "spec.json").is_file()]
    if recorded:
        folders = [p for p in folders if any((p / name).exists() for name in RECORDED)]
    return sorted(folders)


def check_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a registry that is not a file, or one that is missing
    or empty while run folders exist (truncated or deleted: never start over on top)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    if size is not None and not path.is_file():
        raise RegistryError(f"The registry {path} is not a file", hint=REPAIR_HINT)
    if not size:
        folders = run_folders(path, recorded=True)
        if folders:
            state = "missing" if size is None else "empty (0 bytes)"
            raise RegistryError(
                f"The registry {path} is {state} but {len(folders)} run folder(s) exist in "
                f"{folders[0].parent}: mllib will not start a new registry over them",
                hint="Run `mllib doctor --repair` to rebuild it from the run folders, or "
                "`mllib doctor --restore BACKUP` to put back a backup.",
            )
        return


def explain(exc: sqlite3.Error, path: Path, busy_timeout_s: float) -> RegistryError | None:
    """The RegistryError that says what `exc` means for the registry at `path`; None for errors
    of the statement itself (a bug, or a constraint), which stay as they are."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return RegistryError(
            f"The registry {path} stayed locked by another process for more than "
            f"{busy_timeout_s:g} s",
            hint="Another mllib command is writing to it; try again when it is done, or raise "
            "`[registry] busy_timeout_s` in mllib.toml. Nothing was changed.",
        )
    full = name == "SQLITE_FULL" or "database or disk is full" in text
    if full or (name.startswith("SQLITE_IOERR") and _disk_full(path)):
        return RegistryError(
            f"The disk holding the registry {path} is full",
            hint="Free some space, then run the command again; the change that did not fit was "
            "rolled back whole.",
        )
    damaged = ("malformed", "not a database")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(word in text for word in damaged):
        return RegistryError(f"The registry {path} is damaged ({text})", hint=REPAIR_HINT)
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
        return RegistryError(
            f"Reading or writing the registry {path} failed ({text})",
            hint="Check the disk (full, removed, read-only?), then run the command again.",
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return RegistryError(
            f"The registry {path} cannot be opened for writing ({text})",
            hint="Check that its folder exists and that you may write to it and to the file.",
        )
    return None


def _disk_full(path: Path) -> bool:
    """Whether the filesystem holding `path` has (next to) no space left: SQLite reports a WAL
    index it cannot grow on a full tmpfs as an I/O error, not as SQLITE_FULL."""
    import shutil

    try:
        return shutil.disk_usage(path.parent).free < FULL_BELOW
    except OSError:
        return False


class RegistryConnection(sqlite3.Connection):
    """An sqlite3 connection whose failures about the file itself are RegistryErrors (one line,
    exit 3); set `registry_path` and `busy_timeout_s` after connecting."""

    registry_path: Path = Path("registry.db")
    busy_timeout_s: float = 0.0

    def _explained(self, exc: sqlite3.Error) -> BaseException:
        return explain(exc, self.registry_path, self.busy_timeout_s) or exc

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise self._explained(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise self._explained(exc) from exc

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            raise self._explained(exc) from exc


def fetch_all(conn: sqlite3.Connection, cursor: sqlite3.Cursor) -> list[Any]:
    """`cursor.fetchall()`, a damaged page met while reading said as a RegistryError."""
    try:
        return cursor.fetchall()
    except sqlite3.Error as exc:
        path = getattr(conn, "registry_path", Path("registry.db"))
        explained = explain(exc, path, getattr(conn, "busy_timeout_s", 0.0))
        if explained is None:
            raise
        raise explained from exc
