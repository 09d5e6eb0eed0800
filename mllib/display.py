"""How values read on a terminal, the same in the CLI and the dashboard: metric and param values,
registry times as local times, durations, and the colour of each run status."""

from __future__ import annotations

import json
from typing import Any

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
    # studies (`mllib tune list`) and their trials
    "complete": "green",
    "finished": "green",
    "pruned": "yellow",
    "interrupted": "yellow",
    "stopped": "red",
    "waiting": "dim",
    "created": "dim",
}


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def fmt_time(text: str | None) -> str:
    """A registry time (ISO 8601, UTC) as this machine's local time: `2026-01-31 14:05:09`."""
    if not text:
        return "-"
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def evaluation_cell(evaluation: dict[str, Any] | None, count: int, limit: int = 3) -> str:
    """A latest evaluation in one cell: its first metrics, and how many evaluations there are."""
    if not evaluation:
        return ""
    metrics = list(evaluation["eval_metrics"].items())[:limit]
    text = " ".join(f"{k}={fmt_value(v)}" for k, v in metrics)
    return text + (f" ({count} evals)" if count > 1 else "")


def evaluation_source(evaluation: dict[str, Any], count: int, trained_by: str) -> str:
    """Where a training run's latest evaluation comes from, in words."""
    where = (
        "in the training run"
        if evaluation["run_id"] == trained_by
        else f"run {evaluation['run_id']}"
    )
    of = f"latest of {count}" if count > 1 else "the only one"
    return f"{of}: {where}, {fmt_time(evaluation['ended_at'])}"
