"""Metric points (step series) and evaluation metrics of runs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mllib.metric_values import from_stored
from mllib.registry.db import Registry


def insert_points(
    reg: Registry, run_id: str, points: Iterable[tuple[int, str, int, float | str | None, float]]
) -> int:
    """Insert (seq, name, step, value, ts) points in one transaction; points already present are skipped."""
    rows = [(run_id, *p) for p in points]
    if not rows:
        return 0
    with reg.transaction():
        reg.conn.executemany(
            "INSERT OR IGNORE INTO metrics (run_id, seq, name, step, value, ts) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def set_eval_metrics(reg: Registry, run_id: str, metrics: Mapping[str, float]) -> None:
    with reg.transaction():
        reg.db.table("eval_metrics").upsert_all(
            [{"run_id": run_id, "name": k, "value": v} for k, v in metrics.items()],
            pk=("run_id", "name"),
        )


def get_eval_metrics(reg: Registry, run_id: str) -> dict[str, float | None]:
    rows = reg.query(
        "SELECT name, value FROM eval_metrics WHERE run_id = ? ORDER BY rowid", (run_id,)
    )
    return {r["name"]: from_stored(r["value"]) for r in rows}


def metric_summary(reg: Registry, run_id: str) -> dict[str, dict[str, Any]]:
    """Per metric: last value (highest step, then latest logged), min, max and number of points.

    min and max leave NaN points out (NaN when every point is NaN); last may be NaN. `value =
    'NaN'` finds NaN on both databases: SQLite keeps it as that text, PostgreSQL as a NaN float,
    which it holds equal to itself.
    """
    rows = reg.query(
        """
        SELECT name, MIN(CASE WHEN value = 'NaN' THEN NULL ELSE value END) AS min,
          MAX(CASE WHEN value = 'NaN' THEN NULL ELSE value END) AS max, COUNT(*) AS count,
          SUM(CASE WHEN value = 'NaN' THEN 1 ELSE 0 END) AS nans,
          (SELECT m2.value FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.name = m.name
           ORDER BY m2.step DESC, m2.seq DESC LIMIT 1) AS last,
          MAX(step) AS last_step
        FROM metrics m WHERE run_id = ? GROUP BY run_id, name ORDER BY MIN(seq)
        """,
        (run_id,),
    )
    summary = {}
    for row in rows:
        if row.pop("nans") == row["count"]:
            row["min"] = row["max"] = math.nan
        row["last"] = from_stored(row["last"])
        summary[row.pop("name")] = row
    return summary


def metric_series(reg: Registry, run_id: str, name: str) -> list[tuple[int, float | None]]:
    rows = reg.query(
        "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step, seq",
        (run_id, name),
    )
    return [(r["step"], from_stored(r["value"])) for r in rows]


def metric_names(reg: Registry, run_id: str) -> list[str]:
    """The metrics a run logged, in the order it logged each one's first step. Each name's
    first point is found through the (run_id, name, step) index: as cheap as the names alone,
    where ordering by MIN(seq) reads every point's row (4x slower)."""
    rows = reg.query(
        """
        SELECT d.name, (SELECT m.seq FROM metrics m WHERE m.run_id = ? AND m.name = d.name
                        ORDER BY m.step, m.seq LIMIT 1) AS first
        FROM (SELECT DISTINCT name FROM metrics WHERE run_id = ?) d ORDER BY first
        """,
        (run_id, run_id),
    )
    return [r["name"] for r in rows]


def points_after(
    reg: Registry,
    run_id: str,
    after_seq: int = 0,
    limit: int = 50_000,
    *,
    name: str | None = None,
) -> list[tuple[int, str, int, float | None]]:
    """A run's metric points logged after `after_seq`, in logging order: (seq, name, step, value);
    `name`: that metric's alone. A live view reads each point once by following the highest seq
    it holds."""
    only = "" if name is None else " AND name = ?"
    rows = reg.query(
        f"SELECT seq, name, step, value FROM metrics WHERE run_id = ? AND seq > ?{only}"
        " ORDER BY seq LIMIT ?",
        (run_id, after_seq, *([] if name is None else [name]), limit),
    )
    return [(r["seq"], r["name"], r["step"], from_stored(r["value"])) for r in rows]


def latest_values(reg: Registry, run_id: str, name: str, n: int) -> list[float | None]:
    """The newest `n` values of one metric of a run, oldest first (highest steps)."""
    rows = reg.query(
        "SELECT value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step DESC, seq DESC"
        " LIMIT ?",
        (run_id, name, n),
    )
    return [from_stored(r["value"]) for r in reversed(rows)]
