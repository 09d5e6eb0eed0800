"""The schedules feature's registry tables: the schedules, and each run one of them started.
Numbered migrations, never edited once released.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils


@cache
def migrations() -> sqlite_utils.Migrations:
    """This feature's migration set (built on first use, when a registry is opened)."""
    migrations_ = new_set("mllib.schedules")

    @migrations_(name="0001_schedules_schedule_runs")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("schedules").create(
            {
                "id": str,
                "action": str,  # evaluate
                "model_ref": str,  # NAME, NAME:VERSION, NAME@ALIAS or NAME@ENV, as given
                "best": str,  # --best METRIC, resolved at each run
                "data": str,  # JSON list of KEY=NAME[@VERSION], resolved at each run
                "gates": str,  # JSON {metric: threshold} (--fail-under)
                "runtime": str,
                "every_s": int,
                "every": str,  # as given: 1d
                "created_at": str,
                "user": str,
                "next_due_at": str,
                "last_run_at": str,
            },
            pk="id",
            not_null={"action", "model_ref", "every_s", "created_at", "next_due_at"},
        )
        db.table("schedule_runs").create(
            {
                "schedule_id": str,
                "started_at": str,
                "run_id": str,  # the evaluation run (None: it could not start)
                "model": str,
                "version": int,
                "deployment_id": str,  # the deployment serving the version evaluated, if any
                "env": str,
                "status": str,  # the run's status, or `breached` (a gate failed), `error`
                "breaches": str,  # JSON list of lines, one per gate not passed
                "error": str,
            },
            foreign_keys=[("schedule_id", "schedules", "id")],
        )
        db.table("schedule_runs").create_index(["schedule_id", "started_at"])
        db.table("schedule_runs").create_index(["run_id"])

    return migrations_
