"""The few places SQLite's SQL and PostgreSQL's differ, translated in one spot.

The registry's queries are written once, in SQLite's spelling with `?` placeholders, in the
subset both databases understand (`INSERT ... ON CONFLICT`, `COALESCE`, `CASE`, `LIMIT`). On
PostgreSQL, `translate` turns the rest into its spelling: `?` into psycopg's `%s` (and a literal
`%` into `%%`), `INSERT OR IGNORE` into `ON CONFLICT DO NOTHING`, and `BEGIN IMMEDIATE` (SQLite's
"take the write lock now") into `BEGIN`. Every PostgreSQL table mllib creates also gets a
`rowid` column that numbers rows in insertion order, as SQLite's implicit rowid does, so
`ORDER BY rowid` means the same on both.

>>> translate("SELECT * FROM runs WHERE id = ? AND action LIKE 'train%'")
"SELECT * FROM runs WHERE id = %s AND action LIKE 'train%%'"
>>> translate("INSERT OR IGNORE INTO metrics (a) VALUES (?)")
'INSERT INTO metrics (a) VALUES (%s) ON CONFLICT DO NOTHING'
"""

from __future__ import annotations

import re
from functools import lru_cache

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_BEGIN_IMMEDIATE = re.compile(r"^\s*BEGIN\s+IMMEDIATE\s*$", re.IGNORECASE)


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """`sql`, written for SQLite with `?` placeholders, as PostgreSQL (psycopg) takes it."""
    if _BEGIN_IMMEDIATE.match(sql):
        return "BEGIN"
    ignore = bool(_OR_IGNORE.match(sql))
    if ignore:
        sql = _OR_IGNORE.sub("INSERT INTO", sql, count=1)
    parts = _QUOTED.split(sql)
    for i in range(0, len(parts), 2):  # even parts lie outside quotes
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%")
    text = "".join(parts)
    if ignore:
        text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return text


def is_postgres_url(location: str) -> bool:
    """Whether a database location names a PostgreSQL server (else it is a SQLite file)."""
    return location.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
