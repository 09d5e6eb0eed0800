"""The registry on PostgreSQL (psycopg 3): a connection that speaks the registry's SQL, and the
part of sqlite-utils' API the registry and every feature's migrations use, over PostgreSQL.

The registry's code is written once: its raw SQL goes through `mllib.registry.dialect.translate`,
and its `reg.db[...]` calls (insert, upsert, update, and `create`/`create_index` in migrations)
reach `PgDatabase`, which writes the same rows and tables in PostgreSQL's spelling. sqlite-utils'
own `Migrations` then apply each feature's migration set here unchanged, recorded in the same
`_sqlite_migrations` table. Column types map as sqlite-utils maps them (str TEXT, int BIGINT,
float DOUBLE PRECISION); every table gets a `rowid` column (`mllib.registry.dialect`).

psycopg is imported only when a PostgreSQL registry is opened (`pip install 'mllib[server]'`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mllib.errors import ConfigError, MllibError
from mllib.registry.dialect import redact_url, translate

if TYPE_CHECKING:
    import psycopg

_TYPES = {
    str: "TEXT",
    int: "BIGINT",
    float: "DOUBLE PRECISION",
    bytes: "BYTEA",
    bool: "BIGINT",
    dict: "TEXT",
    list: "TEXT",
}
ROWID = "rowid"


def connect(url: str) -> PgConnection:
    """Open a connection to the PostgreSQL database at `url` (autocommit; the registry issues
    BEGIN/COMMIT itself). A clear error when psycopg is missing or the server does not answer."""
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "A PostgreSQL database needs psycopg, which is not installed",
            hint="Install it with: pip install 'mllib[server]'",
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"Cannot connect to PostgreSQL at {redact_url(url)}: {_first_line(exc)}",
            hint="Check that the server runs and the URL (host, port, database, user) is right.",
        ) from None
    return PgConnection(conn, url)


class DatabaseUnavailable(MllibError):
    """The database server cannot be reached (down, restarting, refusing connections)."""

    exit_code = 3


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PgConnection:
    """A psycopg connection with sqlite3's `execute`/`executemany` shape, taking SQLite-spelled
    SQL (`?` placeholders) and returning psycopg cursors (fetchone, fetchall, rowcount,
    description)."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self.raw = conn
        self.url = url

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        return self.raw.execute(
            translate(sql), list(params) if isinstance(params, tuple) else params
        )

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [list(r) for r in rows])
        return cursor

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def close(self) -> None:
        self.raw.close()


class PgDatabase:
    """The subset of `sqlite_utils.Database` that mllib uses, on PostgreSQL."""

    dialect = "postgresql"  # a migration that must differ asks `getattr(db, "dialect", ...)`

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn
        self.primary_keys: dict[str, list[str]] = {}  # table -> its primary key, read once

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table(self, name: str) -> PgTable:
        return PgTable(self, name)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params)

    def table_names(self) -> list[str]:
        """The tables of the schema the connection works in (as sqlite-utils' `table_names`)."""
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
        return [r[0] for r in rows]

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction, or a savepoint inside one (as sqlite-utils' `atomic`)."""
        if self.conn.in_transaction:  # join it, as the registry's transactions nest
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PgTable:
    """One table: sqlite-utils' `Table` methods the registry calls, in PostgreSQL's SQL."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self.db = db
        self.name = name

    # -- schema -------------------------------------------------------------------------------
    def exists(self) -> bool:
        row = self.db.execute("SELECT to_regclass(?) IS NOT NULL", (self.name,)).fetchone()
        return bool(row[0])

    @property
    def pks(self) -> list[str]:
        rows = self.db.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(?) AND i.indisprimary",
            (self.name,),
        ).fetchall()
        return [r[0] for r in rows]

    def create(
        self,
        columns: Mapping[str, type],
        pk: str | Sequence[str] | None = None,
        not_null: Iterable[str] | None = None,
        foreign_keys: Iterable[tuple[str, str, str]] | None = None,
        **_: Any,
    ) -> PgTable:
        keys = [pk] if isinstance(pk, str) else list(pk or ())
        required = set(not_null or ())
        refs = {column: (table, other) for column, table, other in foreign_keys or ()}
        lines = []
        for column, kind in columns.items():
            if keys == [column] and kind is int:
                lines.append(f"{_ident(column)} BIGINT GENERATED BY DEFAULT AS IDENTITY")
                continue
            line = f"{_ident(column)} {_TYPES.get(kind, 'TEXT')}"
            if column in required or column in keys:
                line += " NOT NULL"
            if column in refs:
                table, other = refs[column]
                line += f" REFERENCES {_ident(table)} ({_ident(other)})"
            lines.append(line)
        if ROWID not in columns:
            lines.append(f"{ROWID} BIGINT GENERATED ALWAYS AS IDENTITY")
        if keys:
            lines.append(f"PRIMARY KEY ({', '.join(map(_ident, keys))})")
        self.db.execute(f"CREATE TABLE {_ident(self.name)} ({', '.join(lines)})")
        if ROWID not in keys:
            self.db.execute(
                f"CREATE INDEX {_ident(self.name + '_rowid')} ON {_ident(self.name)} ({ROWID})"
            )
        return self

    def create_index(
        self, columns: Sequence[str], index_name: str | None = None, unique: bool = False, **_: Any
    ) -> PgTable:
        name = index_name or f"idx_{self.name}_{'_'.join(columns)}"
        self.db.execute(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX {_ident(name)} ON {_ident(self.name)} "
            f"({', '.join(map(_ident, columns))})"
        )
        return self

    def add_column(self, name: str, kind: type = str, **_: Any) -> PgTable:
        self.db.execute(
            f"ALTER TABLE {_ident(self.name)} ADD COLUMN {_ident(name)} {_TYPES.get(kind, 'TEXT')}"
        )
        return self

    # -- rows -----------------------------------------------------------------------------------
    def rows_where(
        self, where: str | None = None, where_args: Sequence[Any] = (), order_by: str | None = None
    ) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {_ident(self.name)}"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        cursor = self.db.execute(sql, tuple(where_args))
        names = [d[0] for d in cursor.description or ()]
        for row in cursor.fetchall():
            yield dict(zip(names, row, strict=True))

    def insert(self, record: Mapping[str, Any], **options: Any) -> PgTable:
        return self.insert_all([record], **options)

    def insert_all(
        self,
        records: Iterable[Mapping[str, Any]],
        pk: str | Sequence[str] | None = None,
        replace: bool = False,
        ignore: bool = False,
        **_: Any,
    ) -> PgTable:
        conflict = ""
        if ignore:
            conflict = " ON CONFLICT DO NOTHING"
        elif replace:
            conflict = "upsert"
        self._write(list(records), pk, conflict)
        return self

    def upsert(self, record: Mapping[str, Any], pk: str | Sequence[str], **_: Any) -> PgTable:
        return self.upsert_all([record], pk=pk)

    def upsert_all(
        self, records: Iterable[Mapping[str, Any]], pk: str | Sequence[str], **_: Any
    ) -> PgTable:
        self._write(list(records), pk, "upsert")
        return self

    def _write(
        self, records: list[Mapping[str, Any]], pk: str | Sequence[str] | None, conflict: str
    ) -> None:
        """Insert `records` grouped by their set of columns; `conflict` is "" (fail), an ON
        CONFLICT clause, or "upsert" (update the given columns of a row with the same `pk`)."""
        groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for record in records:
            groups.setdefault(tuple(record), []).append(record)
        keys = [pk] if isinstance(pk, str) else list(pk or ())
        for columns, rows in groups.items():
            clause = conflict
            if conflict == "upsert":
                updated = [c for c in columns if c not in keys]
                target = f"({', '.join(map(_ident, keys))})"
                if updated:
                    sets = ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in updated)
                    clause = f" ON CONFLICT {target} DO UPDATE SET {sets}"
                else:
                    clause = f" ON CONFLICT {target} DO NOTHING"
            marks = ", ".join("?" for _ in columns)
            sql = (
                f"INSERT INTO {_ident(self.name)} ({', '.join(map(_ident, columns))}) "
                f"VALUES ({marks}){clause}"
            )
            values = [[_value(row[c]) for c in columns] for row in rows]
            if len(values) == 1:
                self.db.execute(sql, tuple(values[0]))
            else:
                self.db.conn.executemany(sql, values)

    def update(self, pk_values: Any, updates: Mapping[str, Any] | None = None, **_: Any) -> PgTable:
        """Set `updates` on the row whose primary key is `pk_values` (a value or a tuple)."""
        keys = self.db.primary_keys.get(self.name) or self.pks
        self.db.primary_keys[self.name] = keys
        values = list(pk_values) if isinstance(pk_values, list | tuple) else [pk_values]
        where = " AND ".join(f"{_ident(k)} = ?" for k in keys)
        if not updates:
            return self
        sets = ", ".join(f"{_ident(c)} = ?" for c in updates)
        args = [_value(v) for v in updates.values()] + values
        self.db.execute(f"UPDATE {_ident(self.name)} SET {sets} WHERE {where}", tuple(args))
        return self


def _value(value: Any) -> Any:
    """A Python value as the registry stores it (sqlite-utils stores dicts and lists as JSON)."""
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value
