"""The agents' migration set: attempts of remote runs, sync cursors, and pinned agents."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils


@cache
def migrations() -> sqlite_utils.Migrations:
    """This feature's migration set (built on first use, when a registry is opened)."""
    migrations = new_set("mllib.agents")

    @migrations(name="0001_attempts_sync_cursors_pins")
    def initial(db: sqlite_utils.Database) -> None:
        # Every attempt of a remote run, with where it ran and why it ended (retries keep the run id).
        db["agent_attempts"].create(
            {
                "run_id": str,
                "attempt": int,
                "agent": str,
                "status": str,  # running, succeeded, failed, cancelled
                "failure_class": str,
                "reason": str,
                "started_at": str,
                "ended_at": str,
                "log_start": int,  # size of the local output.log when this attempt began
            },
            pk=("run_id", "attempt"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        # How far this registry has merged each agent's change feed.
        db["agent_sync"].create({"agent": str, "cursor": int, "synced_at": str}, pk="agent")
        # Runs started with --agent NAME go only there.
        db["agent_pins"].create(
            {"run_id": str, "agent": str}, pk="run_id", foreign_keys=[("run_id", "runs", "id")]
        )

    return migrations
