"""`mllib schedules list|show` as plain data (the --json forms; keys in the README)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mllib.registry.metrics import get_eval_metrics
from mllib.schedules import records
from mllib.schedules.records import Schedule
from mllib.workspace import Workspace


def list_schedules(ws: Workspace) -> list[dict[str, Any]]:
    """Every schedule, oldest first, with its last run (None before the first)."""
    found = []
    for schedule in records.all_schedules(ws.registry):
        last = records.runs_of(ws.registry, schedule.id, limit=1)
        found.append(_schedule(schedule) | {"last": _run(ws, last[0]) if last else None})
    return found


def show_schedule(ws: Workspace, schedule_id: str, limit: int = 20) -> dict[str, Any]:
    """One schedule with its latest `limit` runs, newest first."""
    schedule = records.get(ws.registry, schedule_id)
    runs = records.runs_of(ws.registry, schedule.id, limit=limit)
    return _schedule(schedule) | {"runs": [_run(ws, r) for r in runs]}


def _schedule(schedule: Schedule) -> dict[str, Any]:
    return asdict(schedule) | {"command": schedule.command()}


def _run(ws: Workspace, row: dict[str, Any]) -> dict[str, Any]:
    metrics = get_eval_metrics(ws.registry, row["run_id"]) if row["run_id"] else {}
    return row | {"eval_metrics": metrics}
