"""Group commit: submissions that arrive together are recorded in one transaction, and each is
acknowledged once that transaction is durable.

A durable commit costs one flush of the disk (fsync: 0.1 to 4 ms here), so committing each
submission alone caps a server near one submission per flush. One writer thread takes every
submission waiting, records each in a savepoint of its own (a refused one, over a quota or a
duplicate, is rolled back alone), reads each accepted one's place in the queue in the same
transaction, commits once, and answers them all. A lone submission is committed at once:
batching adds no waiting, it only shares the flush when requests overlap. The API's event loop
awaits its answer (`submit_async`) without holding a thread of the pool.

SQLite has one writer. On PostgreSQL a batch spends most of its time waiting on round trips,
so WRITERS threads, each on its own connection, record batches side by side (PostgreSQL flushes
their commits together). Each batch first locks its users' rows, in name order: two batches of
one user take turns, so a quota is checked against the other's commit, and two batches never
wait on each other in a cycle.

>>> commits = GroupCommit(ctx, place=lambda reg, accepted: (None, None))  # doctest: +SKIP
>>> await commits.submit_async(user, submission, max_queued=1000)  # doctest: +SKIP
Accepted(run=RunRecord(id='k3x9...', ...), job=Job(...), created=True, position=(4, None))
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from mllib.queue.jobs import notify
from mllib.server.accounts import User, lock_users
from mllib.server.batched import record_batch
from mllib.server.submit import Accepted, Submission

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.server.context import ServerContext

MAX_BATCH = 256
WRITERS = 4  # on PostgreSQL; SQLite has one
ANSWER_TIMEOUT_S = 120.0

Place = Callable[["Registry", Accepted], tuple[int | None, float | None]]
Answer = Future[Accepted] | asyncio.Future[Accepted]
Item = tuple[User, Submission, int, Answer]


class GroupCommit:
    """The writer thread; `place` reads an accepted submission's place and estimated start
    (mllib.queue.views.position) inside its batch's transaction."""

    def __init__(self, ctx: ServerContext, place: Place | None = None) -> None:
        self.ctx = ctx
        self.place = place
        self.waiting: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        writers = WRITERS if ctx.pool_size > 1 else 1  # PostgreSQL's pool; SQLite's one writer
        self.threads = [
            threading.Thread(target=self._run, name=f"group-commit-{i}", daemon=True)
            for i in range(writers)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, user: User, sub: Submission, max_queued: int) -> Accepted:
        """Record `sub` (in the next batch) and return once it is durable."""
        answer: Future[Accepted] = Future()
        self.waiting.put((user, sub, max_queued, answer))
        return answer.result(timeout=ANSWER_TIMEOUT_S)

    async def submit_async(self, user: User, sub: Submission, max_queued: int) -> Accepted:
        """`submit` for an event loop: awaits the batch's commit without blocking a thread
        (the writer answers a batch's waiters on one loop with one call into it)."""
        answer: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self.waiting.put((user, sub, max_queued, answer))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            return await answer

    def stop(self) -> None:
        self.waiting.put(None)  # each writer puts it back for the next
        for thread in self.threads:
            thread.join(timeout=10)

    def _take(self) -> list[Item] | None:
        """Every submission waiting (at least one, at most MAX_BATCH); None: stop. One whose
        caller gave up before it was taken is dropped unrecorded (it was never acknowledged)."""
        batch: list[Item] = []
        while not batch:
            first = self.waiting.get()
            if first is None:
                self.waiting.put(None)  # for the other writers
                return None
            items = [first]
            while len(items) < MAX_BATCH:
                try:
                    item = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.waiting.put(None)
                    break
                items.append(item)
            batch = [item for item in items if _still_wanted(item[3])]
        return batch

    def _run(self) -> None:
        from mllib.server.context import open_database

        reg = None
        while (batch := self._take()) is not None:
            try:
                if reg is None or getattr(reg.conn, "broken", False):
                    reg = open_database(self.ctx.home, self.ctx.settings)
                outcomes = self._record(reg, batch)
            except Exception as exc:  # the commit itself failed: nobody is acknowledged
                _settle(batch, [exc] * len(batch))
                if reg is not None and getattr(reg.conn, "broken", False):
                    reg.close()
                    reg = None
                continue
            _settle(batch, outcomes)
            self.ctx.wake.set()
        if reg is not None:
            reg.close()

    def _record(self, reg: Registry, batch: list[Item]) -> list[Accepted | BaseException]:
        with reg.transaction():
            if len(self.threads) > 1:
                lock_users(reg, {user.name for user, *_ in batch})
            items = [(user, sub, max_queued) for user, sub, max_queued, _ in batch]
            outcomes = record_batch(reg, self.ctx.store, self.ctx.home.runs_dir, items)
            if self.place is not None:
                for outcome in outcomes:
                    if isinstance(outcome, Accepted):
                        outcome.position = self.place(reg, outcome)
            notify(reg)  # dispatchers LISTENing on PostgreSQL wake at the commit
        return outcomes


def _still_wanted(answer: Answer) -> bool:
    """Whether the submission's caller still waits (a thread's answer can no longer be
    cancelled once this says so; an event loop's may time out meanwhile: it is then recorded
    unacknowledged, and a retry with its key finds it)."""
    if isinstance(answer, Future):
        return answer.set_running_or_notify_cancel()
    return not answer.done()


def _settle(batch: list[Item], outcomes: list[Accepted | BaseException]) -> None:
    """Give each waiter its outcome: threads directly, each event loop in one call."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[Answer, Accepted | BaseException]]] = {}
    for (*_, answer), outcome in zip(batch, outcomes, strict=True):
        if isinstance(answer, Future):
            _give(answer, outcome)
        else:
            loops.setdefault(answer.get_loop(), []).append((answer, outcome))
    for loop, pairs in loops.items():
        with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits any more
            loop.call_soon_threadsafe(_give_all, pairs)


def _give_all(pairs: list[tuple[Answer, Accepted | BaseException]]) -> None:
    for answer, outcome in pairs:
        if not answer.done():  # one that timed out was cancelled
            _give(answer, outcome)


def _give(answer: Answer, outcome: Accepted | BaseException) -> None:
    if isinstance(outcome, BaseException):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
