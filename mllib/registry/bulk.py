"""Many new rows of one table in as few INSERT statements as SQLite and PostgreSQL take (each
statement Python's work on both, and a round trip to PostgreSQL): rows with the same columns
share a multi-row VALUES list, at most MAX_VALUES placeholders a statement; and, on PostgreSQL,
statements sent together (`pipelined`), so a batch of them waits for one answer, not one each.

>>> with pipelined(reg):  # doctest: +SKIP
...     insert_rows(reg, "params", [{"run_id": "a1", "name": "lr", ...}, ...])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from mllib.registry.db import Registry

MAX_VALUES = 30_000  # SQLite allows 32,766 placeholders a statement, PostgreSQL 65,535


def insert_rows(reg: Registry, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (column -> value each) into `table` (joins the caller's transaction)."""
    by_columns: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(row), []).append(row)
    for columns, same in by_columns.items():
        insert_tuples(reg, table, columns, [tuple(row.values()) for row in same])


def insert_tuples(
    reg: Registry, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (values in the order of `columns`) into `table`."""
    names = ", ".join(f'"{name}"' for name in columns)
    one = f"({', '.join('?' for _ in columns)})"
    step = max(1, MAX_VALUES // max(len(columns), 1))
    with reg.transaction():
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            reg.conn.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * len(chunk))}",
                [value for row in chunk for value in row],
            )


@contextmanager
def pipelined(reg: Registry) -> Iterator[None]:
    """PostgreSQL: the statements inside sent without waiting for each one's answer (psycopg's
    pipeline mode: fetching a result waits for those before it; an error is raised by the end of
    the block at the latest, and the statements after it are skipped). SQLite: as they are. Read
    a result with the cursor's fetch methods, not `rowcount` or `description` before them."""
    if not reg.is_postgres:
        yield
        return
    from mllib.registry.postgres import PgConnection

    conn: Any = reg.conn
    assert isinstance(conn, PgConnection)
    with conn.raw.pipeline():
        yield
