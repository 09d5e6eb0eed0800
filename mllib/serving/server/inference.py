"""Where the gateway gets its predictions: in the API-server process itself (inline), or from
LitServe's inference worker processes behind its request queue (worker).

inline: every API server loads its own copy of the model and runs the LitAPI's decode, predict
and encode on a predict thread of its own, one request at a time, or, for a model with
predict_batch, every request queued when the thread comes free in one call (up to max_batch;
it never waits for more to arrive). No inter-process hop: for a
CPU model that takes a fraction of a millisecond, the hop (pickling, two pipes, two process
wake-ups) costs more than the prediction. worker: LitServe's worker processes, for GPU models
and for models that should not share a process with the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from mllib.serving.server.board import READY, WorkerBoard
from mllib.serving.server.litserve_internals import WorkerChannel
from mllib.serving.server.modelapi import ModelAPI

Reply = tuple[int, bytes]  # HTTP status and JSON body


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

    def __init__(self, api: ModelAPI, slot: int, timeout_s: float, max_batch: int = 1) -> None:
        self.api = api
        self.slot = slot
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._answer = api.answer  # the job that may be batched (loading is not)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._serve, name="mllib-predict", daemon=True).start()

    def _serve(self) -> None:
        held = None  # a job taken while gathering a batch that cannot join it
        while True:
            job = held or self._jobs.get()
            held = None
            if job[1] is not self._answer or self.max_batch < 2 or not self.api.batches:
                self._run(job)
                continue
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more[1] is not self._answer:
                    held = more
                    break
                batch.append(more)
            self._run_batch(batch)

    def _run(self, job: tuple) -> None:
        future, call, args = job
        if future.done():  # timed out while queued: its client has had its 504
            return
        try:
            result = call(*args)
        except BaseException as exc:  # answer() never raises; load() may be interrupted
            result = exc
        self._reply(_settle, future, result)

    def _run_batch(self, batch: list[tuple]) -> None:
        live = [(future, args) for future, _, args in batch if not future.done()]
        if not live:
            return
        try:
            results: list[Any] = self.api.answer_batch([args for _, args in live])
        except BaseException as exc:  # answer_batch() never raises; kept as _run's guard
            results = [exc] * len(live)
        self._reply(_settle_all, [future for future, _ in live], results)

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
        future = self._submit(self._answer, request_id, body)
        timer = self._loop.call_later(self.timeout_s, _settle, future, None)
        try:
            return await future
        finally:
            timer.cancel()


def _settle_all(futures: list[asyncio.Future], results: list[Any]) -> None:
    for future, result in zip(futures, results, strict=True):
        _settle(future, result)


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # timed out already, or cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
