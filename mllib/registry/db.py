"""The registry's SQLite connection: WAL, a long busy timeout, and write transactions that lock up front.

Writes use BEGIN IMMEDIATE so two processes never both read then try to upgrade to a write lock
(SQLite answers that deadlock with "database is locked" at once, without waiting).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.registry.sqlite import import_sqlite_utils

if TYPE_CHECKING:
    import sqlite_utils

BUSY_TIMEOUT_S = 60.0


def where_equal(**columns: Any) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b = ?` for the columns given a value ("" when none is), and its args:
    the filters of a listing, e.g. `where_equal(status=status, model=model)`."""
    given = {name: value for name, value in columns.items() if value}
    if not given:
        return "", []
    return " WHERE " + " AND ".join(f"{name} = ?" for name in given), list(given.values())


class Registry:
    """An open registry database. Cheap to open; one per process or thread is typical.

    >>> reg = Registry.open(Path(".mllib/registry.db"))  # doctest: +SKIP
    >>> with reg.transaction():  # doctest: +SKIP
    ...     reg.db["runs"].update("abc", {"status": "running"})
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.db: sqlite_utils.Database = import_sqlite_utils().Database(conn)
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Registry:
        """Open (creating and migrating if needed) the registry at `path`: every migration set
        mllib.plugins.MIGRATIONS names. A damaged, emptied, locked or full one is a
        RegistryError (mllib.registry.health)."""
        from mllib.filemodes import PRIVATE_DIR, private_file
        from mllib.plugins import MIGRATIONS
        from mllib.registry.health import RegistryConnection, check_file, explain

        check_file(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        if not path.exists():  # runs' params and errors may be sensitive: 0600 from the start
            private_file(path)  # SQLite gives its -wal and -shm files the same mode
        try:
            conn = sqlite3.connect(
                path,
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
                factory=RegistryConnection,
            )
        except sqlite3.Error as exc:
            explained = explain(exc, path, busy_timeout_s)
            if explained is None:
                raise
            raise explained from exc
        conn.registry_path, conn.busy_timeout_s = path, busy_timeout_s
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        registry = cls(path, conn)
        registry.migrate(MIGRATIONS)
        return registry

    def migrate(self, refs: Iterable[str]) -> None:
        """Apply the pending migrations of the sets `refs` name ("module:function", see
        mllib.registry.schema), in order, one process at a time."""
        from mllib.registry.schema import migration_sets

        sets = migration_sets(refs)
        if not any(m.pending(self.db) for m in sets):
            return
        with self.transaction():
            for m in sets:
                m.apply(self.db)

    @contextmanager
    def transaction(self) -> Iterator[Registry]:
        """A write transaction holding the write lock from its start; nested calls join the outer one."""
        with self._lock:
            if self.conn.in_transaction:
                yield self
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self.conn.execute("COMMIT")  # a full disk can fail it: rolled back below
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        from mllib.registry.health import fetch_all

        with self._lock:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in fetch_all(self.conn, cursor)]

    def close(self) -> None:
        self.conn.close()
