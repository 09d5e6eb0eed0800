"""Which job runs next, and where: per-user fair share, then priority, then age; placed on the
agent with enough free GPUs that is fullest (best fit keeps whole agents free for big jobs).

Among the users with a job waiting, the one holding the fewest running GPU slots goes first; a
tie goes to the more urgent head job (priority), then the older. Each waiting user's best job is
one index seek (`jobs_pick`), and the waiting users themselves are found by skipping through
that index (a recursive query), so a decision costs a few dozen seeks however long the queue.
On PostgreSQL the head row is read `FOR UPDATE SKIP LOCKED`: two dispatchers never wait on, or
both take, the same job.

>>> pick(reg, {"gpu1": 2, "gpu2": 0}, max_running={"ana": 4})  # doctest: +SKIP
Placement(job=Job(run_id='k3x9...', user='bo', ...), agent='gpu1')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from mllib.queue.jobs import QUEUED, RUNNING, Job, claim
from mllib.registry import Registry

_WAITING_USERS = """
WITH RECURSIVE waiting(name) AS (
  SELECT MIN("user") FROM jobs WHERE state = 'queued'
  UNION ALL
  SELECT (SELECT MIN("user") FROM jobs WHERE state = 'queued' AND "user" > waiting.name)
  FROM waiting WHERE waiting.name IS NOT NULL
)
SELECT name FROM waiting WHERE name IS NOT NULL
"""
_HEAD = (
    'SELECT * FROM jobs WHERE state = ? AND "user" = ? AND gpus <= ? AND not_before <= ? '
    "ORDER BY priority DESC, enqueued_at, run_id LIMIT 1"
)


@dataclass(frozen=True)
class Placement:
    job: Job
    agent: str


def waiting_users(reg: Registry) -> list[str]:
    return [r["name"] for r in reg.query(_WAITING_USERS)]


def running_slots(reg: Registry) -> dict[str, tuple[int, int]]:
    """user -> (GPU slots held, jobs running)."""
    rows = reg.query(
        'SELECT "user", SUM(CASE WHEN gpus < 1 THEN 1 ELSE gpus END) AS slots, COUNT(*) AS n '
        'FROM jobs WHERE state = ? GROUP BY "user"',
        (RUNNING,),
    )
    return {r["user"]: (int(r["slots"]), int(r["n"])) for r in rows}


def order(reg: Registry, biggest: int, max_running: Mapping[str, int | None]) -> list[Job]:
    """Each waiting user's best job that fits in `biggest` free slots, in fair-share order;
    users at their `max_running` quota are left out."""
    held = running_slots(reg)
    now = time.time()
    lock = " FOR UPDATE SKIP LOCKED" if reg.is_postgres else ""
    heads: list[tuple[tuple[int, int, float, str], Job]] = []
    for user in waiting_users(reg):
        slots, count = held.get(user, (0, 0))
        limit = max_running.get(user)
        if limit is not None and count >= limit:
            continue
        rows = reg.query(_HEAD + lock, (QUEUED, user, max(biggest, 1), now))
        if rows:
            job = Job.from_row(rows[0])
            heads.append(((slots, -job.priority, job.enqueued_at, job.run_id), job))
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
            if agent is not None and claim(reg, job.run_id, agent, lease_s):
                job.state, job.agent = RUNNING, agent
                return Placement(job, agent)
    return None
