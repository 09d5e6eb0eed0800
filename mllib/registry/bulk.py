"""Many new rows of one table in as few INSERT statements as SQLite and PostgreSQL take (each
statement a round trip to PostgreSQL, and Python's work per statement on both): rows with the
same columns share a multi-row VALUES list, at most MAX_VALUES placeholders a statement.

>>> insert_rows(reg, "params", [{"run_id": "a1", "name": "lr", ...}, ...])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
