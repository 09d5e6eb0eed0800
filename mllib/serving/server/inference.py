"""Where the gateway gets its predictions: in the API-server process itself (inline), or from
LitServe's inference worker processes behind its request queue (worker).

inline: every API server loads its own copy of the model and runs the LitAPI's decode, predict
and encode on a predict thread of its own, one request at a time, or, for a model with
predict_batch, every request queued when the thread comes free in one call (up to max_batch;
it waits for more to arrive only as long as a LitServe API's batch_timeout). No inter-process
hop: for a CPU model that takes a fraction of a millisecond, the hop (pickling, two pipes, two
process wake-ups) costs more than the prediction. worker: LitServe's worker processes, for GPU models
and for models that should not share a process with the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from mllib.serving.server.board import READY, WorkerBoard
from mllib.serving.server.litserve_internals import WorkerChannel
from mllib.serving.server.modelapi import ModelAPI

Reply = tuple[int, bytes]  # HTTP status and JSON body
log = logging.getLogger("mllib.serving")


class Predictor(Protocol):
    """What the gateway asks for a prediction, in either mode.

    >>> await predictor.start(wait=False)  # doctest: +SKIP
    >>> predictor.ready() and await predictor.answer("req-1", b'{"x": [1]}')  # doctest: +SKIP
    (200, b'{"y":[2.0]}')
    """

    async def start(self, wait: bool) -> None: ...  # at the API server's start-up
    def ready(self) -> bool: ...  # a model is loaded that can answer
    async def answer(self, request_id: str, body: bytes) -> Reply | None: ...  # None: timed out


class WorkerInference:
    """Requests go to LitServe's inference workers (through a WorkerChannel, which knows
    LitServe's queue and response buffer); ready once one worker has loaded the model."""

    def __init__(self, server: Any, board: WorkerBoard, timeout_s: float) -> None:
        self.board = board
        self.timeout_s = timeout_s
        self.channel = WorkerChannel(server)

    async def start(self, wait: bool) -> None:
        """Nothing to load here: the workers load the model."""

    def ready(self) -> bool:
        return any(state == READY for _, state in self.board.snapshot())

    async def answer(self, request_id: str, body: bytes) -> Reply | None:
        """A worker's reply (None: none within timeout_s)."""
        return await self.channel.ask(request_id, body, self.timeout_s)


class InlineInference:
    """The model in this process, as worker `slot` of the board, on a predict thread of its own.

    The event loop hands each request to the thread and goes on (reading requests, answering
    /health and /metrics, timing out a prediction that takes too long); the thread answers
    one request at a time, as a worker process would, or the requests waiting together in one
    predict_batch() call when the model has one and `max_batch` > 1.
    """

    def __init__(self, api: ModelAPI, slot: int, timeout_s: float) -> None:
        self.api = api
        self.slot = slot
        self.timeout_s = timeout_s
        self._answer = api.answer  # the job that may be batched (loading is not)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[tuple[tuple[str, bytes], asyncio.Future]] = []  # this pass's requests
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._serve, name="mllib-predict", daemon=True).start()

    @property
    def max_batch(self) -> int:
        """Requests answered together at most: the model's (known once it is loaded)."""
        return self.api.max_batch

    def _serve(self) -> None:
        held = None  # a job taken while gathering requests that cannot join them
        while True:
            job = held or self._jobs.get()
            held = None
            if job[1] is not None:  # a call (loading the model)
                self._run(job)
                continue
            group = [job[0]]
            if self.max_batch > 1 and self.api.batches:  # every request already waiting
                until = time.monotonic() + self.api.batch_timeout_s  # and those arriving till
                while sum(len(many.items) for many in group) < self.max_batch:
                    wait = until - time.monotonic()
                    try:
                        more = self._jobs.get(timeout=wait) if wait > 0 else self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more[1] is not None:
                        held = more
                        break
                    group.append(more[0])
            self._run_many(group)

    def _run(self, job: tuple) -> None:
        future, call, args = job
        if future.done():
            return
        try:
            result = call(*args)
        except BaseException as exc:  # load() may be interrupted
            result = exc
        self._reply(_settle, future, result)

    def _run_many(self, group: list[_Many]) -> None:
        """Requests handed over together (those that arrived in one pass of the event loop, or
        in one read of a link, and any others already waiting): in predict_batch() calls of up
        to max_batch where the model has one, else one by one. Those that timed out before
        their turn (while queued, or while the ones before them were predicted) are not."""
        pending = [(many, i) for many in group for i in range(len(many.items))]
        size = self.max_batch if self.max_batch > 1 and self.api.batches else 1
        replies: dict[int, list] = {id(many): [None] * len(many.items) for many in group}
        for at in range(0, len(pending), size):
            now = time.monotonic()
            live = [(many, i) for many, i in pending[at : at + size] if not many.gone(i, now)]
            if not live:
                continue
            items = [many.items[i] for many, i in live]
            try:
                answers = self.api.answer_batch(items) if size > 1 else [self._answer(*items[0])]
            except BaseException as exc:  # answer_batch() never raises; kept as a guard
                answers = [(500, repr(exc).encode())] * len(items)
            for (many, i), answer in zip(live, answers, strict=True):
                replies[id(many)][i] = answer
        self._reply(_done_all, [(many.done, replies[id(many)]) for many in group])

    def answer_many(
        self, items: list[tuple[str, bytes]], done: Callable[[list[Reply | None]], None]
    ) -> None:
        """Answer `items` (request id, body) as one job of the predict thread: one hand-over
        each way for all of them. `done` gets their replies in order, on the event loop (None:
        the request waited past timeout_s and was not predicted)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._jobs.put((_Many(items, done, time.monotonic() + self.timeout_s), None, ()))

    def _reply(self, settle: Callable[..., None], *args: Any) -> None:
        """Hand results to the event loop; at shutdown it may be closed, and nobody waits."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(settle, *args)

    def _submit(self, call: Callable[..., Any], *args: Any) -> asyncio.Future:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future = self._loop.create_future()
        self._jobs.put((future, call, args))
        return future

    async def start(self, wait: bool) -> None:
        """Load the model on the predict thread; with `wait`, only return once it is loaded."""
        loading = self._submit(self.api.load, self.slot)
        if wait:
            await loading

    def ready(self) -> bool:
        return self.api.loaded

    async def answer(self, request_id: str, body: bytes) -> Reply | None:
        """The model's reply (None: none within timeout_s; the prediction goes on meanwhile)."""
        future = asyncio.get_running_loop().create_future()
        self.submit(request_id, body, functools.partial(_settle, future))
        return await future

    def submit(self, request_id: str, body: bytes, done: Callable[[Reply | None], None]) -> None:
        """Ask for the model's reply: `done` gets it on the event loop, once (None: none within
        timeout_s; the prediction goes on meanwhile).

        Requests that arrive in the same pass of the event loop are handed to the predict thread
        together (one wake-up of it, and one of the loop for all their replies), which also
        makes them one predict_batch() call for a model that has one."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(((request_id, body), _Call(done, loop, self.timeout_s)))

    def _hand_over(self) -> None:
        pending, self._pending = self._pending, []
        calls = [call for _, call in pending]
        self._jobs.put(
            (
                _Many(
                    [item for item, _ in pending],
                    lambda replies: _settle_calls(calls, replies),
                    time.monotonic() + self.timeout_s,
                    calls,
                ),
                None,
                (),
            )
        )


class _Call:
    """One request's wait for its reply: `done` gets the predict thread's reply or, after
    `timeout_s`, None, whichever comes first."""

    __slots__ = ("_done", "_timer", "settled")

    def __init__(
        self,
        done: Callable[[Reply | None], None],
        loop: asyncio.AbstractEventLoop,
        timeout_s: float,
    ) -> None:
        self._done = done
        self.settled = False
        self._timer = loop.call_later(timeout_s, self.settle, None)

    def done(self) -> bool:
        return self.settled

    def settle(self, reply: Reply | None) -> None:
        if self.settled:
            return
        self.settled = True
        self._timer.cancel()
        try:
            self._done(reply)
        except Exception:  # one request's failure must not keep the others of its pass waiting
            log.exception("answering a request failed")


class _Many:
    """A hand-over of several requests at once: `done` gets their replies, in order, on the
    event loop (None for one not predicted: it waited past the deadline, or its call, when
    given, was settled meanwhile by its timeout)."""

    __slots__ = ("calls", "deadline", "done", "items")

    def __init__(
        self,
        items: list,
        done: Callable[[list], None],
        deadline: float,
        calls: list[_Call] | None = None,
    ) -> None:
        self.items = items
        self.done = done
        self.deadline = deadline
        self.calls = calls

    def gone(self, i: int, now: float) -> bool:
        """Whether request `i` is past its deadline, or its caller stopped waiting."""
        return now > self.deadline or (self.calls is not None and self.calls[i].done())


def _done_all(calls: list[tuple[Callable[[list], None], list]]) -> None:
    for done, replies in calls:
        done(replies)


def _settle_calls(calls: list[_Call], replies: list[Reply | None]) -> None:
    for call, reply in zip(calls, replies, strict=True):
        call.settle(reply)


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # timed out already, or cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
