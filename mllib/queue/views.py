"""What `mllib queue` shows: queued and running jobs by user, with each queued job's place in the
queue and an estimated start.

The place follows the scheduler's fair share: waiting users take turns, so a user's n-th job
starts after about n-1 rounds of one job per waiting user, plus the users ahead of it in the
current round. The estimate divides that place by the fleet's slots and multiplies by the recent
mean run time; it is None until some run has finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mllib.queue.jobs import QUEUED, RUNNING, Job
from mllib.queue.scheduler import order, running_slots, waiting_users
from mllib.registry import Registry
from mllib.registry.runs import iso

RECENT = 200  # finished runs whose durations the estimate averages
JOBS = "SELECT j.*, r.model FROM jobs j JOIN runs r ON r.id = j.run_id "  # a job and its model


def mean_duration_s(reg: Registry) -> float | None:
    """The mean time of the most recent finished runs of the queue, in seconds."""
    rows = reg.query(
        "SELECT r.started_at, r.ended_at FROM jobs j JOIN runs r ON r.id = j.run_id "
        "WHERE j.state = 'done' AND r.started_at IS NOT NULL AND r.ended_at IS NOT NULL "
        "ORDER BY j.claimed_at DESC LIMIT ?",
        (RECENT,),
    )
    from mllib.registry.runs import RunRecord

    times = []
    for row in rows:
        record = RunRecord(
            "", "", "", "", "", started_at=row["started_at"], ended_at=row["ended_at"]
        )
        if record.duration_s is not None:
            times.append(record.duration_s)
    return sum(times) / len(times) if times else None


def queue(
    reg: Registry,
    *,
    user: str | None = None,
    capacity: int = 1,
    limit: int = 200,
    mean_s: float | None = None,
) -> dict[str, Any]:
    """Running and queued jobs (of `user`, or everyone's), with counts per user, each queued
    job's `position` (1: next) and `estimated_start_s` (seconds from now, or None)."""
    users = waiting_users(reg)
    rounds = _turns(reg)
    held = running_slots(reg)
    mean = mean_s
    running = [
        _row(r, None, None)
        for r in reg.query(
            JOBS
            + "WHERE j.state = ?"
            + (' AND j."user" = ?' if user else "")
            + " ORDER BY j.claimed_at",
            (RUNNING, user) if user else (RUNNING,),
        )
    ]
    queued: list[dict[str, Any]] = []
    for name in [user] if user else users:
        rows = reg.query(
            JOBS + 'WHERE j.state = ? AND j."user" = ? '
            "ORDER BY j.priority DESC, j.enqueued_at, j.run_id LIMIT ?",
            (QUEUED, name, limit),
        )
        for rank, row in enumerate(rows):
            place = rank * max(len(users), 1) + rounds.get(name, len(users)) + 1
            wait = None if mean is None else math.floor((place - 1) / max(capacity, 1)) * mean
            queued.append(_row(row, place, wait))
    queued.sort(key=lambda r: r["position"])
    counts = reg.query(
        'SELECT "user", state, COUNT(*) AS n FROM jobs WHERE state IN (?, ?) '
        + ('AND "user" = ? ' if user else "")
        + 'GROUP BY "user", state',
        (QUEUED, RUNNING, user) if user else (QUEUED, RUNNING),
    )
    by_user: dict[str, dict[str, int]] = {}
    for row in counts:
        entry = by_user.setdefault(row["user"], {"queued": 0, "running": 0, "gpus_running": 0})
        entry[row["state"]] = int(row["n"])
    for name, (slots, _) in held.items():
        if name in by_user:
            by_user[name]["gpus_running"] = slots
    return {"running": running, "queued": queued[:limit], "users": by_user}


def position(
    reg: Registry,
    job: Job,
    *,
    capacity: int = 1,
    mean_s: float | None = None,
    fair: Round | None = None,
    ahead: int | None = None,
) -> tuple[int | None, float | None]:
    """A queued job's place and estimated start (None, None once it is not queued), from how
    many of its user's jobs are ahead of it: cheap enough to answer every submission with.
    `fair`: `current_round(reg)` read a moment ago (a server answering many submissions reads
    it once a second); else it is read now. `ahead`: how many of its user's queued jobs go
    before it, when the caller knows (a batch of submissions counts its own); else counted."""
    if job.state != QUEUED:
        return None, None
    fair = fair or current_round(reg)
    ahead = _ahead(reg, job) if ahead is None else ahead
    place = int(ahead) * max(fair.users, 1) + fair.turns.get(job.user, fair.users) + 1
    wait = None if mean_s is None else math.floor((place - 1) / max(capacity, 1)) * mean_s
    return place, wait


_NEWEST = (
    'SELECT (SELECT COALESCE(SUM(queued), 0) FROM queue_waiting WHERE "user" = ? '
    'AND priority >= ?) AS waiting, (SELECT run_id FROM jobs WHERE state = ? AND "user" = ? '
    "AND priority = ? ORDER BY enqueued_at DESC, run_id DESC LIMIT 1) AS newest"
)
_COUNT_AHEAD = (
    'SELECT COUNT(*) AS n FROM jobs WHERE state = ? AND "user" = ? AND '
    "(priority > ? OR (priority = ? AND (enqueued_at < ? OR (enqueued_at = ? AND run_id < ?))))"
)


def _ahead(reg: Registry, job: Job) -> int:
    """How many of its user's queued jobs go before `job`. The newest of its priority (a
    submission just recorded) has all of them with that priority or a higher one ahead: a sum
    of the queue's per-user counts, however long the queue; an older one is counted."""
    row = reg.query(_NEWEST, (job.user, job.priority, QUEUED, job.user, job.priority))[0]
    if row["newest"] == job.run_id:
        return int(row["waiting"]) - 1
    args = (QUEUED, job.user, job.priority, job.priority, job.enqueued_at, job.enqueued_at)
    return int(reg.query(_COUNT_AHEAD, (*args, job.run_id))[0]["n"])


@dataclass(frozen=True)
class Round:
    """The fair share's current round: how many users wait, and each one's turn (0: next)."""

    users: int
    turns: dict[str, int]


def current_round(reg: Registry) -> Round:
    return Round(len(waiting_users(reg)), _turns(reg))


def _turns(reg: Registry) -> dict[str, int]:
    """Each waiting user's turn in the current round of the fair share (0: next)."""
    return {job.user: i for i, job in enumerate(order(reg, 1 << 30, {}))}


def _row(row: dict[str, Any], place: int | None, wait: float | None) -> dict[str, Any]:
    """One job as `mllib queue --json` shows it (a row of JOBS: the job and its run's model)."""
    job = Job.from_row(row)
    return {
        "run_id": job.run_id,
        "user": job.user,
        "model": row["model"],
        "queued_at": iso(job.enqueued_at),
        "state": job.state,
        "priority": job.priority,
        "gpus": job.gpus,
        "agent": job.agent,
        "attempt": job.attempt,
        "position": place,
        "estimated_start_s": None if wait is None else round(wait, 1),
    }
