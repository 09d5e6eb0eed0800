"""Attempts of remote runs: each one's agent, status and reason, and the agent a run is pinned
to. Whether a failed attempt is retried (on another agent when there is one) is the runs'
retry policy (mllib.runs.retry)."""

from __future__ import annotations

from typing import Any

from mllib.registry import Registry
from mllib.registry.runs import now


def current_attempt(reg: Registry, run_id: str) -> dict[str, Any] | None:
    rows = reg.query(
        "SELECT * FROM agent_attempts WHERE run_id = ? ORDER BY attempt DESC LIMIT 1", (run_id,)
    )
    return rows[0] if rows else None


def attempts(reg: Registry, run_id: str) -> list[dict[str, Any]]:
    return reg.query("SELECT * FROM agent_attempts WHERE run_id = ? ORDER BY attempt", (run_id,))


def begin_attempt(reg: Registry, run_id: str, attempt: int, agent: str, log_start: int) -> None:
    with reg.transaction():
        reg.db["agent_attempts"].upsert(
            {
                "run_id": run_id,
                "attempt": attempt,
                "agent": agent,
                "status": "running",
                "started_at": now(),
                "log_start": log_start,
            },
            pk=("run_id", "attempt"),
        )


def end_attempt(
    reg: Registry,
    run_id: str,
    attempt: int,
    status: str,
    failure_class: str | None,
    reason: str | None,
    ended_at: str | None = None,
) -> bool:
    """Close a running attempt; False when it had already ended (so callers act once)."""
    with reg.transaction():
        cur = reg.conn.execute(
            "UPDATE agent_attempts SET status = ?, failure_class = ?, reason = ?, ended_at = ? "
            "WHERE run_id = ? AND attempt = ? AND status = 'running'",
            (status, failure_class, reason, ended_at or now(), run_id, attempt),
        )
        return cur.rowcount == 1


def pinned_agent(reg: Registry, run_id: str) -> str | None:
    rows = reg.query("SELECT agent FROM agent_pins WHERE run_id = ?", (run_id,))
    return rows[0]["agent"] if rows else None


def pin(reg: Registry, run_id: str, agent: str) -> None:
    with reg.transaction():
        reg.db["agent_pins"].upsert({"run_id": run_id, "agent": agent}, pk="run_id")
