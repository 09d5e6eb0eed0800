"""The registry's connection: a SQLite file (the embedded default) or a PostgreSQL database.

SQLite: WAL, a long busy timeout, and write transactions that lock up front: writes use BEGIN
IMMEDIATE so two processes never both read then try to upgrade to a write lock (SQLite answers
that deadlock with "database is locked" at once, without waiting). PostgreSQL (a team server's
database): the same queries through mllib.registry.postgres, which translates the few places the
two differ (mllib.registry.dialect).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.registry.dialect import POSTGRESQL, SQLITE, is_postgres_url
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
    # Quoted: `user` is a column here and a keyword (the session's user) to PostgreSQL.
    return " WHERE " + " AND ".join(f'"{name}" = ?' for name in given), list(given.values())


class Registry:
    """An open registry database. Cheap to open; one per process or thread is typical.

    >>> reg = Registry.open(Path(".mllib/registry.db"))  # doctest: +SKIP
    >>> with reg.transaction():  # doctest: +SKIP
    ...     reg.db["runs"].update("abc", {"status": "running"})
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, db: Any = None) -> None:
        self.path = path
        self.conn = conn
        self.dialect = getattr(conn, "dialect", SQLITE)
        self.db: sqlite_utils.Database = db or import_sqlite_utils().Database(conn)
        self._lock = threading.RLock()

    @classmethod
    def connect(cls, location: str | Path, migrations: Iterable[str] = ()) -> Registry:
        """Open the registry at `location`: a PostgreSQL URL (`postgresql://...`) or a SQLite
        file's path, migrated with every set of mllib.plugins.MIGRATIONS and `migrations`."""
        if isinstance(location, str) and is_postgres_url(location):
            registry = cls._open_postgres(location)
        else:
            registry = cls.open(Path(location))
        if migrations:
            registry.migrate(migrations)
        return registry

    @classmethod
    def _open_postgres(cls, url: str) -> Registry:
        from mllib.plugins import MIGRATIONS
        from mllib.registry.postgres import PgDatabase, connect

        conn = connect(url)
        registry = cls(Path(url), conn, PgDatabase(conn))  # type: ignore[arg-type]
        registry.migrate(MIGRATIONS)
        return registry

    @property
    def is_postgres(self) -> bool:
        return bool(self.dialect == POSTGRESQL)

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

    @classmethod
    def empty(cls) -> Registry:
        """A registry in memory with every table and no rows: what read-only commands read in
        a folder where nothing was recorded yet, so that they create nothing there."""
        from mllib.plugins import MIGRATIONS

        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        registry = cls(Path(":memory:"), conn)
        registry.migrate(MIGRATIONS)
        return registry

    def migrate(self, refs: Iterable[str]) -> None:
        """Apply the pending migrations of the sets `refs` name ("module:function", see
        mllib.registry.schema), in order, one process at a time."""
        from mllib.registry.schema import migration_sets

        sets = migration_sets(refs)
        if not any(m.pending(self.db) for m in sets):
            return
        try:
            with self.transaction():
                if (
                    self.is_postgres
                ):  # one process migrates at a time; the others wait, then see it done
                    self.conn.execute("SELECT pg_advisory_xact_lock(7244901)")
                for m in sets:
                    m.apply(self.db)
        finally:
            self.__dict__.pop("tables", None)  # read again: the migrations added theirs

    @cached_property
    def tables(self) -> frozenset[str]:
        """The names of the registry's tables, read once (a run's record.json is written from
        them twice a run); `migrate` reads them again."""
        return frozenset(self.db.table_names())

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

    @contextmanager
    def savepoint(self) -> Iterator[Registry]:
        """Inside a transaction, a part that can fail alone (rolled back to its start, the rest
        kept); outside one, a transaction of its own."""
        with self._lock:
            if not self.conn.in_transaction:
                with self.transaction():
                    yield self
                return
            self.conn.execute("SAVEPOINT part")
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK TO SAVEPOINT part")
                self.conn.execute("RELEASE SAVEPOINT part")
                raise
            self.conn.execute("RELEASE SAVEPOINT part")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        from mllib.registry.health import fetch_all

        with self._lock:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in fetch_all(self.conn, cursor)]

    def close(self) -> None:
        self.conn.close()
