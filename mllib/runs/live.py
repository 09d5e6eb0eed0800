"""What a live view of runs reads (the dashboard's Runs pane, from this project's registry or,
through the team server's API, from the server's): a window of runs as compact rows, each with
one metric's newest values, then only the runs changed since a cursor, so a view of 10,000 runs
costs per refresh what the few that changed cost.

>>> view = window(reg, status="running", limit=100, metric="loss")  # doctest: +SKIP
>>> later = changes(reg, cursor_of(view["cursor"]), metric="loss")  # doctest: +SKIP
>>> [row["id"] for row in later["runs"]], later["cursor"]  # doctest: +SKIP
(['k3x9...'], {'change': 43, 'metric_row': 90311})
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mllib.registry.changes import Cursor, changes_since, current_cursor
from mllib.registry.metrics import latest_values, metric_names
from mllib.registry.runs import RunRecord, count_runs, list_runs, runs_by_id

if TYPE_CHECKING:
    from mllib.registry.db import Registry

TREND_POINTS = 24  # newest values of the chosen metric each row carries (a sparkline's)
MAX_TREND_POINTS = 200


def run_row(reg: Registry, run: RunRecord, metric: str | None, points: int) -> dict[str, Any]:
    """One run as a live view's row: who, what and where, its times, and `trend`: the newest
    `points` values of `metric`, oldest first (empty without a metric)."""
    return {
        "id": run.id,
        "model": run.model,
        "action": run.action,
        "status": run.status,
        "failure_class": run.failure_class,
        "runtime": run.runtime,
        "host": run.host,
        "user": run.user,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "trend": latest_values(reg, run.id, metric, points) if metric else [],
    }


def matches_text(run_id: str, model: str, text: str | None) -> bool:
    """Whether `text` (any case) is in the run's id or its model's name; no text matches all."""
    text = (text or "").lower()
    return not text or text in run_id or text in model.lower()


def window(
    reg: Registry,
    *,
    status: str | None = None,
    model: str | None = None,
    user: str | None = None,
    text: str | None = None,
    limit: int = 1000,
    metric: str | None = None,
    points: int = TREND_POINTS,
) -> dict[str, Any]:
    """The newest `limit` runs with this exact status, model and user and `text` in their id or
    model, as rows; `total`: how many match in all; `cursor`: where `changes` goes on from (read
    first, so nothing committed while the window is read is missed)."""
    cursor = current_cursor(reg)
    runs = list_runs(reg, status=status, model=model, user=user, limit=None if text else limit)
    if text:
        runs = [r for r in runs if matches_text(r.id, r.model, text)]
        total = len(runs)
    else:
        total = count_runs(reg, status=status, model=model, user=user)
    return {
        "cursor": asdict(cursor),
        "total": total,
        "runs": [run_row(reg, r, metric, points) for r in runs[:limit]],
    }


def changes(
    reg: Registry,
    cursor: Cursor,
    *,
    user: str | None = None,
    metric: str | None = None,
    points: int = TREND_POINTS,
) -> dict[str, Any]:
    """The runs (of `user`, when given) whose record or metric points changed after `cursor`, as
    rows; `records`: those whose record changed (status, params, evaluation, artifacts),
    `metrics`: those with new points; `cursor`: where to go on from."""
    found = changes_since(reg, cursor)
    runs = [r for r in runs_by_id(reg, found.runs) if user is None or r.user == user]
    shown = {r.id for r in runs}
    return {
        "cursor": asdict(found.cursor),
        "records": sorted(found.records & shown),
        "metrics": sorted(found.metrics & shown),
        "runs": [run_row(reg, r, metric, points) for r in runs],
    }


def cursor_of(data: dict[str, Any]) -> Cursor:
    """A cursor from its JSON form (`window`'s and `changes`' `cursor`)."""
    return Cursor(int(data["change"]), int(data["metric_row"]), int(data.get("horizon", 0)))


def metric_choices(reg: Registry, run_ids: Iterable[str]) -> list[str]:
    """The metric names these runs logged, in first-seen order."""
    names: dict[str, None] = {}
    for run_id in run_ids:
        names.update(dict.fromkeys(metric_names(reg, run_id)))
    return list(names)
