"""Which runs changed since a cursor: what a live view (the dashboard) re-reads instead of every run.

Triggers keep `run_changes(run_id, change)`: every insert or update of a run, its params, its
evaluation or its artifacts gives that run the next change number. Metric points, far more
frequent, get no trigger (it would tax every logged point); the metrics table's rowid, which
grows with each insert, is their cursor instead. On SQLite writers commit one at a time (BEGIN
IMMEDIATE), so both numbers only ever grow in commit order and a reader never skips one.

On PostgreSQL writers run at once: a number taken first may commit last, so a reader going on
after the highest number it saw could skip it. There each change and point also carries its
transaction's id, and the cursor holds a horizon: the oldest transaction still running when it
was read. Everything that commits later belongs to a transaction at or past it, so the next read
takes what is at or past the horizon (reading a few rows again: a live view sets them again).

>>> cursor = current_cursor(reg)  # doctest: +SKIP
>>> changes = changes_since(reg, cursor)  # doctest: +SKIP
>>> changes.records, changes.metrics, changes.cursor  # doctest: +SKIP
({'k3x9...'}, {'a1b2...'}, Cursor(change=42, metric_row=90211))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils

    from mllib.registry.db import Registry

# table -> the column naming its run; each gets an AFTER INSERT and an AFTER UPDATE trigger.
WATCHED = {"runs": "id", "params": "run_id", "eval_metrics": "run_id", "artifacts": "run_id"}


@dataclass(frozen=True)
class Cursor:
    """How far a reader has seen: the last change number and the last metric row."""

    change: int = 0
    metric_row: int = 0
    horizon: int = 0  # PostgreSQL: the oldest transaction running when it was read


@dataclass
class Changes:
    """Runs changed since a cursor, and the cursor to ask from next time."""

    records: set[str] = field(default_factory=set)  # the run's row, params, evaluation, artifacts
    metrics: set[str] = field(default_factory=set)  # new metric points
    cursor: Cursor = Cursor()

    @property
    def runs(self) -> set[str]:
        return self.records | self.metrics


@cache
def migrations() -> sqlite_utils.Migrations:
    """The change feed's migration set (built on first use, when a registry is opened)."""
    migrations = new_set("mllib.registry.changes")

    @migrations(name="0001_run_changes")
    def initial(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE run_changes (run_id TEXT PRIMARY KEY, change INTEGER NOT NULL)")
        db.execute("CREATE INDEX run_changes_change ON run_changes (change)")
        if getattr(db, "dialect", None) == "postgresql":
            _postgres_triggers(db)
            return
        for table, column in WATCHED.items():
            for event in ("INSERT", "UPDATE"):
                # No conflict clause in the body: the firing statement's own (an upsert, INSERT
                # OR IGNORE) would override it. Update the run's row if any, else insert one.
                db.execute(
                    f"CREATE TRIGGER run_changes_{table}_{event.lower()} AFTER {event} ON {table} "
                    "BEGIN "
                    "UPDATE run_changes SET change = (SELECT MAX(change) FROM run_changes) + 1 "
                    f"WHERE run_id = NEW.{column}; "
                    "INSERT INTO run_changes (run_id, change) SELECT "
                    f"NEW.{column}, COALESCE((SELECT MAX(change) FROM run_changes), 0) + 1 "
                    f"WHERE NOT EXISTS (SELECT 1 FROM run_changes WHERE run_id = NEW.{column}); "
                    "END"
                )

    @migrations(name="0002_postgres_transaction_ids")
    def transaction_ids(db: sqlite_utils.Database) -> None:
        if getattr(db, "dialect", None) != "postgresql":
            return  # SQLite's numbers already grow in commit order
        for table in ("run_changes", "metrics"):
            # a constant default first: rows already there need no rewrite (they are all older
            # than any reader's horizon), then each new row gets its transaction's id
            db.execute(f"ALTER TABLE {table} ADD COLUMN xid xid8 NOT NULL DEFAULT '0'")
            db.execute(f"ALTER TABLE {table} ALTER COLUMN xid SET DEFAULT pg_current_xact_id()")
            db.execute(f"CREATE INDEX {table}_xid ON {table} (xid)")
        db.execute(
            "CREATE OR REPLACE FUNCTION run_changes_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO run_changes (run_id, change) "
            "VALUES (to_jsonb(NEW) ->> TG_ARGV[0], nextval('run_changes_seq')) "
            "ON CONFLICT (run_id) DO UPDATE SET change = EXCLUDED.change, "
            "xid = pg_current_xact_id(); RETURN NULL; END $$"
        )

    return migrations


def _postgres_triggers(db: sqlite_utils.Database) -> None:
    """The same triggers on PostgreSQL: one function, told the column naming the run. Numbers
    come from a sequence (concurrent writers there do not take one lock)."""
    db.execute("CREATE SEQUENCE run_changes_seq")
    db.execute(
        "CREATE FUNCTION run_changes_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO run_changes (run_id, change) "
        "VALUES (to_jsonb(NEW) ->> TG_ARGV[0], nextval('run_changes_seq')) "
        "ON CONFLICT (run_id) DO UPDATE SET change = EXCLUDED.change; RETURN NULL; END $$"
    )
    for table, column in WATCHED.items():
        db.execute(
            f"CREATE TRIGGER run_changes_{table} AFTER INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION run_changes_bump('{column}')"
        )


def current_cursor(reg: Registry) -> Cursor:
    """The cursor as of now: read it before loading a view, then ask for changes since it."""
    horizon = _horizon(reg)
    row = reg.query(
        "SELECT (SELECT COALESCE(MAX(change), 0) FROM run_changes) AS change,"
        " (SELECT COALESCE(MAX(rowid), 0) FROM metrics) AS metric_row"
    )[0]
    return Cursor(row["change"], row["metric_row"], horizon)


def changes_since(reg: Registry, cursor: Cursor) -> Changes:
    """The runs whose records or metric points changed after `cursor`. Each half of the cursor
    moves on its own, only as far as what was read, so nothing committed meanwhile is missed.
    On PostgreSQL, what transactions at or past the cursor's horizon wrote (the module's
    docstring); the horizon is read first, so what commits while this reads is read next time."""
    horizon = _horizon(reg)
    if reg.is_postgres:
        since = str(cursor.horizon)
        by_record: tuple[str, object] = ("xid >= ?::xid8", since)
        by_metric: tuple[str, object] = ("xid >= ?::xid8", since)
    else:
        by_record, by_metric = ("change > ?", cursor.change), ("rowid > ?", cursor.metric_row)
    records = reg.query(
        f"SELECT run_id, change FROM run_changes WHERE {by_record[0]}", (by_record[1],)
    )
    metrics = reg.query(
        f"SELECT run_id, MAX(rowid) AS last FROM metrics WHERE {by_metric[0]} GROUP BY run_id",
        (by_metric[1],),
    )
    return Changes(
        {r["run_id"] for r in records},
        {r["run_id"] for r in metrics},
        Cursor(
            max((r["change"] for r in records), default=cursor.change),
            max((r["last"] for r in metrics), default=cursor.metric_row),
            horizon,
        ),
    )


def _horizon(reg: Registry) -> int:
    """PostgreSQL: the oldest transaction still running (none: the next one); SQLite: 0."""
    if not reg.is_postgres:
        return 0
    row = reg.query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon")[0]
    return int(row["horizon"])
