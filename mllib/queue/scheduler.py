"""Which job runs next, and where: per-user fair share, then priority, then age; placed on the
agent with enough free GPUs that is fullest (best fit keeps whole agents free for big jobs).

Among the users with a job waiting, the one holding the fewest running GPU slots goes first; a
tie goes to the user given the fewest slots lately (decaying usage, so over many claims each
waiting user gets an equal share, whatever the order their runs arrived in), then to the more
urgent head job (priority), then the older. One statement reads the waiting users (from the
queue's per-user counts, mllib.queue.schema's queue_waiting, a few rows however long the queue),
each one's best job (one seek of the `jobs_pick` index per user), and what each user holds and
was given: a decision costs in waiting users, not queued jobs, and a claim is one more
statement. On PostgreSQL the chosen row is taken `FOR UPDATE SKIP LOCKED`: two dispatchers never
wait on, or both take, the same job.

>>> pick(reg, {"gpu1": 2, "gpu2": 0}, max_running={"ana": 4})  # doctest: +SKIP
Placement(job=Job(run_id='k3x9...', user='bo', ...), agent='gpu1')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from mllib.queue.jobs import RUNNING, Job, claim, decayed
from mllib.registry import Registry

# The users with a job waiting: the queue's per-user counts (mllib.queue.schema's
# queue_waiting, kept by triggers), a few rows however long the queue is.
_WAITING = 'SELECT DISTINCT "user" AS name FROM queue_waiting WHERE queued > 0'
_WAITING_USERS = _WAITING + " ORDER BY name"
_RUNNING = (
    'SELECT "user", SUM(CASE WHEN gpus < 1 THEN 1 ELSE gpus END) AS slots, COUNT(*) AS n '
    "FROM jobs WHERE state = 'running' GROUP BY \"user\""
)
# Each waiting user's best job, with what the fair share weighs it by (the user's running GPU
# slots and runs, and the slots given lately): one statement, one round trip.
_HEADS = (
    "SELECT j.*, h.slots AS held_slots, h.n AS held_runs, u.usage AS given, "
    f"u.updated_at AS given_at FROM ({_WAITING}) w JOIN jobs j ON j.run_id = ("
    "SELECT c.run_id FROM jobs c WHERE c.state = 'queued' AND c.\"user\" = w.name "
    "AND c.gpus <= ? AND c.not_before <= ? "
    "ORDER BY c.priority DESC, c.enqueued_at, c.run_id LIMIT 1) "
    f'LEFT JOIN ({_RUNNING}) h ON h."user" = j."user" '
    'LEFT JOIN queue_usage u ON u."user" = j."user"'
)


@dataclass(frozen=True)
class Placement:
    job: Job
    agent: str


def waiting_users(reg: Registry) -> list[str]:
    return [r["name"] for r in reg.query(_WAITING_USERS)]


def running_slots(reg: Registry) -> dict[str, tuple[int, int]]:
    """user -> (GPU slots held, jobs running)."""
    return {r["user"]: (int(r["slots"]), int(r["n"])) for r in reg.query(_RUNNING)}


def order(reg: Registry, biggest: int, max_running: Mapping[str, int | None]) -> list[Job]:
    """Each waiting user's best job that fits in `biggest` free slots, in fair-share order;
    users at their `max_running` quota are left out."""
    now = time.time()
    heads = []
    for row in reg.query(_HEADS, (max(biggest, 1), now)):
        job = Job.from_row(row)
        limit = max_running.get(job.user)
        if limit is not None and (row["held_runs"] or 0) >= limit:
            continue
        given = 0.0 if row["given"] is None else decayed(row["given"], row["given_at"], now)
        key = (
            int(row["held_slots"] or 0),
            round(given, 6),
            -job.priority,
            job.enqueued_at,
            job.run_id,
        )
        heads.append((key, job))
    return [job for _, job in sorted(heads, key=lambda pair: pair[0])]


def best_fit(free: Mapping[str, int], slots: int) -> str | None:
    """The agent whose free slots fit `slots` most tightly (ties: by name)."""
    fitting = [(left, name) for name, left in free.items() if left >= slots]
    return min(fitting)[1] if fitting else None


def pick(
    reg: Registry,
    free: Mapping[str, int],
    *,
    lease_s: float = 60.0,
    max_running: Mapping[str, int | None] | None = None,
) -> Placement | None:
    """Claim the next job for one of the agents with free slots (`free`: agent -> free GPU
    slots); None when nothing waiting fits anywhere."""
    if not free or max(free.values()) <= 0:
        return None
    with reg.transaction():
        for job in order(reg, max(free.values()), max_running or {}):
            agent = best_fit(free, job.slots)
            if agent is not None and claim(reg, job, agent, lease_s):
                job.state, job.agent = RUNNING, agent
                return Placement(job, agent)
    return None
