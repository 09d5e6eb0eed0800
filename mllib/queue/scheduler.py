"""Which job runs next, and where: per-user fair share, then priority, then age; placed on the
agent with enough free GPUs that is fullest (best fit keeps whole agents free for big jobs).

Among the users with a job waiting, the one holding the fewest running GPU slots goes first; a
tie goes to the user given the fewest slots lately (decaying usage, so over many claims each
waiting user gets an equal share, whatever the order their runs arrived in), then to the more
urgent head job (priority), then the older. The waiting users and each one's best job are read
in one query (a skip through the `jobs_pick` index, then one seek per user), so a decision costs
a few dozen index seeks however long the queue. On PostgreSQL the chosen row is taken `FOR
UPDATE SKIP LOCKED`: two dispatchers never wait on, or both take, the same job.

>>> pick(reg, {"gpu1": 2, "gpu2": 0}, max_running={"ana": 4})  # doctest: +SKIP
Placement(job=Job(run_id='k3x9...', user='bo', ...), agent='gpu1')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from mllib.queue.jobs import RUNNING, Job, claim, usage
from mllib.registry import Registry

_WAITING = """
WITH RECURSIVE waiting(name) AS (
  SELECT MIN("user") FROM jobs WHERE state = 'queued'
  UNION ALL
  SELECT (SELECT MIN("user") FROM jobs WHERE state = 'queued' AND "user" > waiting.name)
  FROM waiting WHERE waiting.name IS NOT NULL
)
"""
_WAITING_USERS = _WAITING + "SELECT name FROM waiting WHERE name IS NOT NULL"
_HEADS = _WAITING + (
    "SELECT j.* FROM waiting w JOIN jobs j ON j.run_id = ("
    "SELECT h.run_id FROM jobs h WHERE h.state = 'queued' AND h.\"user\" = w.name "
    "AND h.gpus <= ? AND h.not_before <= ? "
    "ORDER BY h.priority DESC, h.enqueued_at, h.run_id LIMIT 1) "
    "WHERE w.name IS NOT NULL"
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
    given = usage(reg)
    heads = []
    for row in reg.query(_HEADS, (max(biggest, 1), time.time())):
        job = Job.from_row(row)
        slots, count = held.get(job.user, (0, 0))
        limit = max_running.get(job.user)
        if limit is not None and count >= limit:
            continue
        key = (
            slots,
            round(given.get(job.user, 0.0), 6),
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
