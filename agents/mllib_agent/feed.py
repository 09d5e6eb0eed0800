"""The agent registry's change feed: every write to a run's rows bumps that run's change number.

Triggers (created idempotently when the agent starts) keep `sync_feed(run_id, change)`, so
`mllib` asks "which runs changed since change N?" and pulls only those, resuming from its
cursor. Metrics are pulled by their per-run `seq`, which the client already has up to some point.
"""

from __future__ import annotations

from typing import Any

TABLES = {
    "runs": ("id", ("INSERT", "UPDATE")),
    "params": ("run_id", ("INSERT", "UPDATE")),
    "metrics": ("run_id", ("INSERT",)),
    "eval_metrics": ("run_id", ("INSERT", "UPDATE")),
    "artifacts": ("run_id", ("INSERT", "UPDATE")),
    "run_environments": ("run_id", ("INSERT", "UPDATE")),
}
METRIC_LIMIT = 50_000


def install_feed(conn) -> None:
    """Create the feed table and its triggers if missing (safe to run at every start)."""
    statements = [
        "CREATE TABLE IF NOT EXISTS sync_feed (run_id TEXT PRIMARY KEY, change INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS sync_feed_change ON sync_feed (change)",
    ]
    for table, (column, events) in TABLES.items():
        for event in events:
            # No conflict clause in the body: the firing statement's (INSERT OR IGNORE, an
            # upsert) would override it. Update the row if there is one, else insert it.
            run = f"NEW.{column}"
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS feed_{table}_{event.lower()} AFTER {event} ON {table} "
                "BEGIN "
                "UPDATE sync_feed SET change = (SELECT MAX(change) FROM sync_feed) + 1 "
                f"WHERE run_id = {run}; "
                "INSERT INTO sync_feed (run_id, change) SELECT "
                f"{run}, COALESCE((SELECT MAX(change) FROM sync_feed), 0) + 1 "
                f"WHERE NOT EXISTS (SELECT 1 FROM sync_feed WHERE run_id = {run}); "
                "END"
            )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql in statements:
            conn.execute(sql)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def changes(conn, since: int, limit: int = 200) -> list[list[Any]]:
    rows = conn.execute(
        "SELECT run_id, change FROM sync_feed WHERE change > ? ORDER BY change LIMIT ?",
        (since, limit),
    ).fetchall()
    return [list(r) for r in rows]


def _rows(conn, sql: str, args: tuple) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def bundle(conn, run_id: str, have_seq: int, limit: int = METRIC_LIMIT) -> dict[str, Any] | None:
    """One run's rows as of one moment (a read transaction): the run, params, evaluation,
    artifacts, and metric points after `have_seq`; `more` when points were left for the next call."""
    conn.execute("BEGIN")
    try:
        runs = _rows(conn, "SELECT * FROM runs WHERE id = ?", (run_id,))
        if not runs:
            return None
        change = conn.execute("SELECT change FROM sync_feed WHERE run_id = ?", (run_id,)).fetchone()
        metrics = conn.execute(
            "SELECT seq, name, step, value, ts FROM metrics WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (run_id, have_seq, limit),
        ).fetchall()
        return {
            "change": change[0] if change else 0,
            "run": runs[0],
            "params": _rows(
                conn, "SELECT name, value, type, source FROM params WHERE run_id = ?", (run_id,)
            ),
            "eval_metrics": _rows(
                conn, "SELECT name, value FROM eval_metrics WHERE run_id = ?", (run_id,)
            ),
            "artifacts": _rows(
                conn,
                "SELECT path, kind, sha256, size, created_at FROM artifacts WHERE run_id = ?",
                (run_id,),
            ),
            "metrics": [list(m) for m in metrics],
            "environment": next(
                iter(_rows(conn, "SELECT data FROM run_environments WHERE run_id = ?", (run_id,))),
                None,
            ),
            "more": len(metrics) == limit,
        }
    finally:
        conn.execute("COMMIT")


def forget_run(conn, run_id: str) -> None:
    """Delete a run's rows (before the same run id starts again here as a new attempt)."""
    for table in ("models", "artifacts", "eval_metrics", "metrics", "params", "run_environments"):
        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
