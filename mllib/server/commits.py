"""Group commit: submissions that arrive together are recorded in one transaction, and each is
acknowledged once that transaction is durable.

A durable commit costs one flush of the disk (fsync: 0.1 to 4 ms here), so committing each
submission alone caps a server near one submission per flush. One writer thread takes every
submission waiting, records each in a savepoint of its own (a refused one, over a quota or a
duplicate, is rolled back alone), commits once, and answers them all. A lone submission is
committed at once: batching adds no waiting, it only shares the flush when requests overlap.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mllib.queue.jobs import notify
from mllib.server.accounts import User
from mllib.server.submit import Accepted, Submission, submit

if TYPE_CHECKING:
    from mllib.server.context import ServerContext

MAX_BATCH = 256
ANSWER_TIMEOUT_S = 120.0


class GroupCommit:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.waiting: queue.Queue[tuple[User, Submission, int, Future[Accepted]] | None] = (
            queue.Queue()
        )
        self.thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self.thread.start()

    def submit(self, user: User, sub: Submission, max_queued: int) -> Accepted:
        """Record `sub` (in the next batch) and return once it is durable."""
        answer: Future[Accepted] = Future()
        self.waiting.put((user, sub, max_queued, answer))
        return answer.result(timeout=ANSWER_TIMEOUT_S)

    def stop(self) -> None:
        self.waiting.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        from mllib.server.context import open_database

        reg = None
        while True:
            first = self.waiting.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.waiting.put(None)
                    break
                batch.append(item)
            try:
                if reg is None or getattr(reg.conn, "broken", False):
                    reg = open_database(self.ctx.home, self.ctx.settings)
                outcomes = self._record(reg, batch)
            except Exception as exc:  # the commit itself failed: nobody is acknowledged
                for *_, answer in batch:
                    answer.set_exception(exc)
                if reg is not None and getattr(reg.conn, "broken", False):
                    reg.close()
                    reg = None
                continue
            for (*_, answer), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    answer.set_exception(outcome)
                else:
                    answer.set_result(outcome)
            self.ctx.wake.set()
        if reg is not None:
            reg.close()

    def _record(self, reg: Any, batch: list[Any]) -> list[Accepted | BaseException]:
        outcomes: list[Accepted | BaseException] = []
        with reg.transaction():
            for user, sub, max_queued, _ in batch:
                try:
                    outcomes.append(
                        submit(reg, self.ctx.store, self.ctx.home.runs_dir, user, sub, max_queued)
                    )
                except Exception as exc:  # this one alone: its savepoint was rolled back
                    outcomes.append(exc)
            notify(reg)  # dispatchers LISTENing on PostgreSQL wake at the commit
        return outcomes
