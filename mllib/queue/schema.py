"""The queue's table: one job per queued or running run, in the registry's own database, so a job
and its run record commit in one transaction. Numbered migrations, never edited once released."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils


@cache
def migrations() -> sqlite_utils.Migrations:
    """The queue's migration set (a team server's database applies it; mllib.plugins)."""
    migrations_ = new_set("mllib.queue")

    @migrations_(name="0001_jobs")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("jobs").create(
            {
                "run_id": str,
                "user": str,
                "priority": int,  # higher goes first among one user's jobs
                "gpus": int,  # GPUs the run asks for (a CPU-only agent offers one slot)
                "state": str,  # queued, running, done
                "enqueued_at": float,  # seconds since the epoch: age breaks ties
                "idem_key": str,  # the submitting client's idempotency key
                "attempt": int,
                "agent": str,  # where the current attempt runs
                "claimed_at": float,
                "lease_until": float,  # renewed by heartbeats; past it the attempt is lost
                "not_before": float,  # a retry waits for its backoff
                "spec": str,  # the worker's RunSpec (JSON), written to the run folder at dispatch
                "secrets": str,  # JSON: the run's env and secret params; NULL once it ended
            },
            pk="run_id",
            not_null={"user", "priority", "gpus", "state", "enqueued_at"},
            foreign_keys=[("run_id", "runs", "id")],
        )
        # The scheduler reads each waiting user's best job with one index seek.
        db.execute(
            'CREATE INDEX jobs_pick ON jobs (state, "user", priority DESC, enqueued_at, run_id)'
        )
        db.execute('CREATE UNIQUE INDEX jobs_idem ON jobs ("user", idem_key)')
        db.execute("CREATE INDEX jobs_agent ON jobs (state, agent)")
        # GPU slots each user was given, decaying (fair share among users tied on running slots).
        db.table("queue_usage").create(
            {"user": str, "usage": float, "updated_at": float}, pk="user"
        )

    @migrations_(name="0002_job_env_plan")
    def env_plan(db: sqlite_utils.Database) -> None:
        # The run's environment plan (what its venv or image holds), made on the submitting
        # machine and written into the run's folder at dispatch, as `spec` is.
        db.table("jobs").add_column("env_plan", str)

    return migrations_
