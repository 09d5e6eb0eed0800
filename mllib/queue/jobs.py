"""Jobs: enqueued with their run in one transaction, claimed for an agent, held by a lease that
heartbeats renew, requeued when the lease runs out, done when the run ends.

A submission is durable when `enqueue`'s transaction commits; a retried submission carrying the
same idempotency key finds the job it made (`find_by_key`) instead of making another. On
PostgreSQL, enqueueing also NOTIFYs `CHANNEL` (delivered at commit), so a dispatcher LISTENing
there wakes at once instead of polling.

>>> with reg.transaction():  # doctest: +SKIP
...     create_run(reg, record, params, sources)
...     enqueue(reg, Job(record.id, "ana", gpus=1), max_queued=1000)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from mllib.errors import MllibError
from mllib.registry import Registry

CHANNEL = "mllib_jobs"
QUEUED, RUNNING, DONE = "queued", "running", "done"


class QuotaExceeded(MllibError):
    """A user's quota (jobs queued or running at once) is full; come back in `retry_after_s`."""

    def __init__(self, message: str, *, hint: str, retry_after_s: int) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


@dataclass
class Job:
    """One row of the jobs table."""

    run_id: str
    user: str
    priority: int = 0
    gpus: int = 1
    state: str = QUEUED
    enqueued_at: float = 0.0
    idem_key: str | None = None
    attempt: int = 1
    agent: str | None = None
    claimed_at: float | None = None
    lease_until: float | None = None
    not_before: float = 0.0
    spec: str | None = None
    secrets: str | None = None
    env_plan: str | None = None  # JSON: mllib.runtime.env_plan.EnvPlan, planned by the client

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def slots(self) -> int:
        """What it takes of an agent: its GPUs, or one slot when it asks for none."""
        return max(1, self.gpus)


def enqueue(reg: Registry, job: Job, *, max_queued: int | None = None, wake: bool = True) -> Job:
    """Queue `job` (joining the caller's transaction, which records its run). Refuses with
    QuotaExceeded when the user already has `max_queued` jobs waiting. `wake=False`: the caller
    notifies once for a batch (`notify`)."""
    with reg.transaction():
        row = job_row(job)
        values = f"VALUES ({', '.join('?' for _ in row)})"
        args: tuple[Any, ...] = tuple(row.values())
        if max_queued is not None:  # the quota checked in the insert: one statement
            values = f"SELECT {', '.join('?' for _ in row)} WHERE {_WAITING_SUM} < ?"
            args += (job.user, max_queued)
        cursor = reg.conn.execute(f"INSERT INTO jobs ({', '.join(_quoted(row))}) {values}", args)
        if cursor.rowcount == 0:
            waiting = queued_count(reg, job.user)
            raise QuotaExceeded(
                f"{job.user} already has {waiting} runs queued (the limit is {max_queued})",
                hint="Wait for some to start, or cancel some with `mllib runs cancel RUN_ID`.",
                retry_after_s=30,
            )
        if wake:
            notify(reg)
    return job


def job_row(job: Job) -> dict[str, Any]:
    """A new job's row of the jobs table (its fields that are set), stamped with the time it
    joins the queue unless it has one."""
    job.enqueued_at = job.enqueued_at or time.time()
    return {k: v for k, v in vars(job).items() if v is not None}  # flat: no asdict copy


def waiting_counts(reg: Registry, users: Iterable[str]) -> dict[tuple[str, int], int]:
    """How many jobs each of `users` has waiting, by (user, priority): a few rows of the
    queue's counts, read once for a batch of submissions."""
    names = sorted(set(users))
    if not names:
        return {}
    rows = reg.query(
        'SELECT "user", priority, queued FROM queue_waiting WHERE "user" IN '
        f"({', '.join('?' for _ in names)})",
        names,
    )
    return {(r["user"], int(r["priority"])): int(r["queued"]) for r in rows}


def _quoted(names: Any) -> list[str]:
    return [f'"{name}"' for name in names]


def notify(reg: Registry) -> None:
    """Wake the dispatchers LISTENing on PostgreSQL (at commit); nothing to do on SQLite, whose
    one writer, the server process, wakes its dispatcher itself."""
    if reg.is_postgres:
        reg.conn.execute(f"NOTIFY {CHANNEL}")


# A user's jobs waiting: a sum of their rows of the queue's counts (mllib.queue.schema).
_WAITING_SUM = '(SELECT COALESCE(SUM(queued), 0) FROM queue_waiting WHERE "user" = ?)'


def queued_count(reg: Registry, user: str) -> int:
    return int(reg.query(f"SELECT {_WAITING_SUM} AS n", (user,))[0]["n"])


def find_by_key(reg: Registry, user: str, key: str) -> Job | None:
    """The job a submission with this idempotency key already made, if any."""
    rows = reg.query('SELECT * FROM jobs WHERE "user" = ? AND idem_key = ?', (user, key))
    return Job.from_row(rows[0]) if rows else None


def get_job(reg: Registry, run_id: str) -> Job | None:
    rows = reg.query("SELECT * FROM jobs WHERE run_id = ?", (run_id,))
    return Job.from_row(rows[0]) if rows else None


HALF_LIFE_S = 3600.0  # how fast what a user was given is forgotten
# PostgreSQL: the queued row, unless another claimer holds it (skipped, not waited on).
_FREE_ROW = (
    "run_id = (SELECT run_id FROM jobs WHERE run_id = ? AND state = ? FOR UPDATE SKIP LOCKED)"
)


def claim(reg: Registry, job: Job, agent: str, lease_s: float) -> bool:
    """Take a queued job for `agent` (counting its slots in its user's usage); False when
    another claimer took it first (on PostgreSQL one holding its row is skipped, not waited on)."""
    now = time.time()
    with reg.transaction():
        cursor = reg.conn.execute(
            "UPDATE jobs SET state = ?, agent = ?, claimed_at = ?, lease_until = ? WHERE "
            + (_FREE_ROW if reg.is_postgres else "run_id = ? AND state = ?"),
            (RUNNING, agent, now, now + lease_s, job.run_id, QUEUED),
        )
        if cursor.rowcount != 1:
            return False
        reg.conn.execute(
            'INSERT INTO queue_usage ("user", usage, updated_at) VALUES (?, ?, ?) '
            'ON CONFLICT ("user") DO UPDATE SET usage = queue_usage.usage * '
            "power(0.5, (excluded.updated_at - queue_usage.updated_at) / ?) + excluded.usage, "
            "updated_at = excluded.updated_at",
            (job.user, float(job.slots), now, HALF_LIFE_S),
        )
        return True


def usage(reg: Registry, now: float | None = None) -> dict[str, float]:
    """What each user was given lately: GPU slots claimed, halving every HALF_LIFE_S."""
    now = now or time.time()
    return {
        r["user"]: decayed(r["usage"], r["updated_at"], now)
        for r in reg.query('SELECT "user", usage, updated_at FROM queue_usage')
    }


def decayed(given: float, at: float, now: float) -> float:
    """A usage recorded `at` as it stands `now` (halving every HALF_LIFE_S)."""
    return float(given) * float(0.5 ** ((now - float(at)) / HALF_LIFE_S))


def renew(reg: Registry, run_ids: list[str], lease_s: float) -> None:
    """Heartbeats: these running jobs' agents answered; their leases run `lease_s` from now."""
    if not run_ids:
        return
    until = time.time() + lease_s
    with reg.transaction():
        reg.conn.executemany(
            "UPDATE jobs SET lease_until = ? WHERE run_id = ? AND state = ?",
            [(until, run_id, RUNNING) for run_id in run_ids],
        )


def expired(reg: Registry, now: float | None = None) -> list[Job]:
    """Running jobs whose lease has run out: their agent stopped answering."""
    rows = reg.query(
        "SELECT * FROM jobs WHERE state = ? AND lease_until < ? ORDER BY lease_until",
        (RUNNING, now or time.time()),
    )
    return [Job.from_row(r) for r in rows]


def requeue(reg: Registry, run_id: str, attempt: int, not_before: float) -> None:
    """Put a job whose attempt failed back in the queue (its place kept: its age is unchanged)."""
    with reg.transaction():
        reg.conn.execute(
            "UPDATE jobs SET state = ?, attempt = ?, agent = NULL, lease_until = NULL, "
            "claimed_at = NULL, not_before = ? WHERE run_id = ?",
            (QUEUED, attempt, not_before, run_id),
        )
        notify(reg)


def done(reg: Registry, run_id: str) -> bool:
    """The run ended (or was cancelled): its job leaves the queue, and its secrets go. False when
    it already had."""
    with reg.transaction():
        cursor = reg.conn.execute(
            "UPDATE jobs SET state = ?, lease_until = NULL, secrets = NULL "
            "WHERE run_id = ? AND state <> ?",
            (DONE, run_id, DONE),
        )
        return bool(cursor.rowcount == 1)


def running(reg: Registry, agent: str | None = None) -> list[Job]:
    """Running jobs (on `agent`, or everywhere), oldest claim first."""
    sql, args = "SELECT * FROM jobs WHERE state = ?", [RUNNING]
    if agent is not None:
        sql, args = sql + " AND agent = ?", [*args, agent]
    return [Job.from_row(r) for r in reg.query(sql + " ORDER BY claimed_at", args)]
