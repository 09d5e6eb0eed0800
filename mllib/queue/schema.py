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

    @migrations_(name="0003_queue_waiting")
    def waiting(db: sqlite_utils.Database) -> None:
        # How many jobs each user has waiting, by priority, kept by triggers on every change of
        # a job's state (any writer, any path): the scheduler reads the waiting users from here
        # and a quota or a place in the queue is a sum of a few rows, not a count of the queue.
        db.execute(
            'CREATE TABLE queue_waiting ("user" TEXT NOT NULL, priority BIGINT NOT NULL, '
            'queued BIGINT NOT NULL, PRIMARY KEY ("user", priority))'
        )
        db.execute(
            'INSERT INTO queue_waiting ("user", priority, queued) SELECT "user", priority, '
            "COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY \"user\", priority"
        )
        if getattr(db, "dialect", None) == "postgresql":
            _postgres_waiting_triggers(db)
        else:
            _sqlite_waiting_triggers(db)

    return migrations_


# A job leaving the queue (OLD) and one joining it (NEW), for the triggers below.
_LEAVE = (
    'UPDATE queue_waiting SET queued = queued - 1 WHERE "user" = OLD."user" '
    "AND priority = OLD.priority"
)
_NEW_QUEUED = "NEW.state = 'queued'"
_CHANGED = (
    "(OLD.state = 'queued') <> (NEW.state = 'queued') OR (NEW.state = 'queued' AND "
    '(OLD."user" <> NEW."user" OR OLD.priority <> NEW.priority))'
)


def _sqlite_join(when: str) -> str:
    """NEW joins the queue (when `when`): its row counted up, or made. No conflict clause (the
    firing statement's own would override it): an update, else an insert."""
    return (
        'UPDATE queue_waiting SET queued = queued + 1 WHERE "user" = NEW."user" '
        f"AND priority = NEW.priority AND {when}; "
        'INSERT INTO queue_waiting ("user", priority, queued) SELECT NEW."user", NEW.priority, 1 '
        f"WHERE {when} AND NOT EXISTS (SELECT 1 FROM queue_waiting "
        'WHERE "user" = NEW."user" AND priority = NEW.priority);'
    )


def _sqlite_waiting_triggers(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE TRIGGER jobs_waiting_insert AFTER INSERT ON jobs WHEN NEW.state = 'queued' "
        f"BEGIN {_sqlite_join('1')} END"
    )
    db.execute(
        "CREATE TRIGGER jobs_waiting_delete AFTER DELETE ON jobs WHEN OLD.state = 'queued' "
        f"BEGIN {_LEAVE}; END"
    )
    db.execute(
        'CREATE TRIGGER jobs_waiting_update AFTER UPDATE OF state, "user", priority ON jobs '
        f"WHEN {_CHANGED} BEGIN {_LEAVE} AND OLD.state = 'queued'; "
        f"{_sqlite_join(_NEW_QUEUED)} END"
    )


def _postgres_waiting_triggers(db: sqlite_utils.Database) -> None:
    db.execute(
        "CREATE FUNCTION queue_waiting_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP <> 'INSERT' AND OLD.state = 'queued' THEN {_LEAVE}; END IF; "
        "IF TG_OP <> 'DELETE' AND NEW.state = 'queued' THEN "
        'INSERT INTO queue_waiting ("user", priority, queued) VALUES (NEW."user", NEW.priority, 1) '
        'ON CONFLICT ("user", priority) DO UPDATE SET queued = queue_waiting.queued + 1; '
        "END IF; RETURN NULL; END $$"
    )
    for name, event, when in (
        ("insert", "INSERT", _NEW_QUEUED),
        ("delete", "DELETE", "OLD.state = 'queued'"),
        ("update", 'UPDATE OF state, "user", priority', _CHANGED),
    ):
        db.execute(
            f"CREATE TRIGGER jobs_waiting_{name} AFTER {event} ON jobs FOR EACH ROW "
            f"WHEN ({when}) EXECUTE FUNCTION queue_waiting_count()"
        )
