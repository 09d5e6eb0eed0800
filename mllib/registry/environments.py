"""Runs' environments: what the worker saw where it ran (mllib.worker.environment), one JSON
object per run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mllib.registry.db import Registry


def set_environment(reg: Registry, run_id: str, data: Mapping[str, Any]) -> None:
    """Record (or replace, for a retried attempt) the environment of a run."""
    row = {"run_id": run_id, "data": json.dumps(data), "packages_hash": data.get("packages_hash")}
    with reg.transaction():
        reg.db.table("run_environments").upsert(row, pk="run_id")


def get_environment(reg: Registry, run_id: str) -> dict[str, Any] | None:
    """The run's recorded environment, or None (it never started, or ran before mllib kept it)."""
    rows = reg.query("SELECT data FROM run_environments WHERE run_id = ?", (run_id,))
    if not rows:
        return None
    data: dict[str, Any] = json.loads(rows[0]["data"])
    return data
