"""A group commit's submissions recorded together: their runs, params and jobs in one INSERT
each (mllib.registry.bulk), not three statements and a savepoint apiece.

Each statement costs Python's work on both databases and a round trip to PostgreSQL, which was
most of a submission's CPU on the server there. Before writing, the batch's users' waiting
counts are read once (one query): a quota is checked against them, and each new job's place
in its user's queue is counted from them, with no query after. Whatever is not plain goes the
one-by-one way (mllib.server.submit.submit), which answers it exactly as before: a submission
that fails a check or is over its quota (a retry with its key is told apart there), one binding
datasets, and, when the rows written together are refused (a run id or an idempotency key
already taken: a retry), every one of them, after their savepoint is rolled back.

On PostgreSQL the batch's users are locked first (mllib.server.commits), so their counts do
not change under a batch; on SQLite its one writer holds the database.

>>> outcomes = record_batch(reg, store, runs_dir, [(user, submission, 1000)])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mllib.errors import MllibError
from mllib.queue.jobs import Job, job_row, waiting_counts
from mllib.registry import Registry
from mllib.registry.bulk import insert_rows, insert_tuples
from mllib.registry.runs import RunRecord, param_rows, run_row
from mllib.server.accounts import User
from mllib.server.submit import Accepted, Submission, prepare, submit

Item = tuple[User, Submission, int]  # who, what, their quota of queued runs
PARAM_COLUMNS = ("run_id", "name", "value", "type", "source")


@dataclass
class _Plain:
    """A submission that can be written with the others: its index in the batch, its rows."""

    index: int
    record: RunRecord
    job: Job
    sub: Submission


def record_batch(
    reg: Registry, store: Any, runs_dir: Any, items: list[Item]
) -> list[Accepted | BaseException]:
    """Record `items` inside the caller's transaction: each one's outcome, in order (an
    Accepted, or the error that refused it alone)."""
    outcomes: list[Accepted | BaseException | None] = [None] * len(items)
    counts: dict[tuple[str, int], int] = {}
    together = _plain(store, runs_dir, items)
    if together:
        counts = waiting_counts(reg, {p.job.user for p in together})
        together = _within_quota(together, counts, items)
    if together and _write(reg, together):
        for p in together:
            outcomes[p.index] = Accepted(p.record, p.job, True)
    for i, (user, sub, max_queued) in enumerate(items):
        if outcomes[i] is None:
            try:
                outcomes[i] = submit(reg, store, runs_dir, user, sub, max_queued)
            except Exception as exc:  # this one alone: its savepoint was rolled back
                outcomes[i] = exc
    _count_ahead(outcomes, together, counts)
    return [o for o in outcomes if o is not None]


def _plain(store: Any, runs_dir: Any, items: list[Item]) -> list[_Plain]:
    """The submissions that pass their checks, bind no datasets and have no run folder yet."""
    found = []
    for i, (user, sub, _) in enumerate(items):
        if sub.datasets:
            continue
        try:
            record, job = prepare(store, runs_dir, user, sub)
        except MllibError:
            continue  # refused one by one, where a retry of a recorded one is told apart
        if record.run_dir and os.path.isdir(record.run_dir):
            continue  # create_run keeps the folder's own copy of the record
        found.append(_Plain(i, record, job, sub))
    return found


def _within_quota(
    plain: list[_Plain], counts: dict[tuple[str, int], int], items: list[Item]
) -> list[_Plain]:
    """Those that fit their user's quota with the ones before them in the batch (the rest are
    refused one by one, with the quota's message)."""
    waiting: dict[str, int] = {}
    for (user, _), n in counts.items():
        waiting[user] = waiting.get(user, 0) + n
    fits = []
    for p in plain:
        user, limit = p.job.user, items[p.index][2]
        if waiting.get(user, 0) < limit:
            waiting[user] = waiting.get(user, 0) + 1
            fits.append(p)
    return fits


def _write(reg: Registry, plain: list[_Plain]) -> bool:
    """Their runs, params and jobs, one INSERT each; False (nothing written) when refused."""
    runs, params, jobs = [], [], []
    for p in plain:
        runs.append(run_row(p.record))
        params += param_rows(p.record.id, p.sub.params, p.sub.sources, set(p.sub.secret))
        jobs.append(job_row(p.job))
    try:
        with reg.savepoint():
            insert_rows(reg, "runs", runs)
            if params:
                insert_tuples(reg, "params", PARAM_COLUMNS, params)
            insert_rows(reg, "jobs", jobs)
    except Exception:  # a key taken (a retry) or any other refusal: each goes one by one
        return False
    return True


def _count_ahead(
    outcomes: list[Accepted | BaseException | None],
    together: list[_Plain],
    counts: dict[tuple[str, int], int],
) -> None:
    """Each job written together: how many of its user's queued jobs go before it (those of
    a higher priority, and older ones of its own), from the counts read before the batch and
    the batch itself. A user with a new job recorded one by one too is left to a query."""
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    ours = {id(p.job) for p in together} & {id(o.job) for o in accepted}
    others = {o.job.user for o in accepted if o.created and id(o.job) not in ours}
    by_user: dict[str, list[_Plain]] = {}
    for p in together:
        if id(p.job) in ours and p.job.user not in others:
            by_user.setdefault(p.job.user, []).append(p)
    for user, mine in by_user.items():
        # the batch's own in queue order: higher priorities first, then the older
        mine.sort(key=lambda p: (-p.job.priority, p.job.enqueued_at, p.job.run_id))
        for place, p in enumerate(mine):
            queued = sum(
                n for (u, prio), n in counts.items() if u == user and prio >= p.job.priority
            )
            outcome = outcomes[p.index]
            assert isinstance(outcome, Accepted)
            outcome.ahead = queued + place
