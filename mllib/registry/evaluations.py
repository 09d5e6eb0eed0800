"""A training run's evaluations: its own (`mllib train --evaluate` evaluates in the same run) and
each later `mllib evaluate` of it that succeeded, which is a run of its own. The latest one
speaks for the training run in `runs show/list/compare`, `models list/show` and `--best`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mllib.metric_values import from_stored
from mllib.registry.db import Registry

_CHUNK = 500  # ids per query (SQLite's limit on parameters is far above it)


@dataclass(frozen=True)
class Evaluation:
    """The latest evaluation of a training run, and how many it has in all."""

    run_id: str  # the run that evaluated: an evaluate run, or the training run itself
    metrics: dict[str, float | None]
    ended_at: str | None
    count: int

    def as_dict(self) -> dict[str, object]:
        """The `evaluation` object of the JSON output (README: JSON output)."""
        return {"run_id": self.run_id, "eval_metrics": self.metrics, "ended_at": self.ended_at}


def latest_evaluations(reg: Registry, run_ids: Collection[str]) -> dict[str, Evaluation]:
    """Training run id -> its latest successful evaluation, for those of `run_ids` that have one."""
    ids = list(dict.fromkeys(run_ids))
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = reg.query(
            "SELECT id, COALESCE(source_run_id, id) AS trained, ended_at FROM runs"
            " WHERE status = 'succeeded' AND ("
            f"   (action = 'evaluate' AND source_run_id IN ({marks}))"
            f"   OR (action = 'train+evaluate' AND id IN ({marks})))"
            " ORDER BY ended_at, created_at, rowid",
            [*chunk, *chunk],
        )
        for row in rows:
            found.setdefault(row["trained"], []).append(row)
    latest = {trained: rows[-1] for trained, rows in found.items()}
    metrics = _eval_metrics(reg, [row["id"] for row in latest.values()])
    return {
        trained: Evaluation(
            row["id"], metrics.get(row["id"], {}), row["ended_at"], len(found[trained])
        )
        for trained, row in latest.items()
    }


def _eval_metrics(reg: Registry, run_ids: list[str]) -> dict[str, dict[str, float | None]]:
    metrics: dict[str, dict[str, float | None]] = {}
    for start in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[start : start + _CHUNK]
        rows = reg.query(
            "SELECT run_id, name, value FROM eval_metrics"
            f" WHERE run_id IN ({', '.join('?' * len(chunk))}) ORDER BY rowid",
            chunk,
        )
        for row in rows:
            metrics.setdefault(row["run_id"], {})[row["name"]] = from_stored(row["value"])
    return metrics


def evaluation_history(reg: Registry, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest `limit` successful evaluations of training run `run_id`, oldest first: the
    trend of a version's metrics (a scheduled evaluation adds one each time it runs)."""
    rows = reg.query(
        "SELECT id, ended_at FROM runs WHERE status = 'succeeded' AND ("
        "   (action = 'evaluate' AND source_run_id = ?) OR (action = 'train+evaluate' AND id = ?))"
        " ORDER BY ended_at DESC, created_at DESC, rowid DESC LIMIT ?",
        (run_id, run_id, limit),
    )
    metrics = _eval_metrics(reg, [row["id"] for row in rows])
    return [
        {
            "run_id": row["id"],
            "ended_at": row["ended_at"],
            "eval_metrics": metrics.get(row["id"], {}),
        }
        for row in reversed(rows)
    ]
