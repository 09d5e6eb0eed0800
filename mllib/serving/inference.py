"""Where the gateway gets its predictions: in the API-server process itself (inline), or from
LitServe's inference worker processes behind its request queue (worker).

inline: every API server loads its own copy of the model and runs the LitAPI's decode, predict
and encode on a predict thread of its own, one request at a time. No inter-process hop: for a
CPU model that takes a fraction of a millisecond, the hop (pickling, two pipes, two process
wake-ups) costs more than the prediction. worker: LitServe's worker processes, for GPU models
and for models that should not share a process with the HTTP server.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

# Only server processes import this module, never the CLI's startup path.
from litserve.utils import ResponseBufferItem  # noqa: TID253

from mllib.serving.modelapi import ModelAPI
from mllib.serving.state import READY, WorkerBoard

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
    """Requests go on LitServe's request queue; a worker's reply comes back on this API
    server's pipe into LitServe's response buffer."""

    def __init__(self, server: Any, board: WorkerBoard, timeout_s: float) -> None:
        self.board = board
        self.timeout_s = timeout_s
        self.queue = server._get_request_queue("/predict")
        self.consumer = server.app.response_queue_id
        self.buffer = server.response_buffer
        self.uids = itertools.count()

    async def start(self, wait: bool) -> None:
        """Nothing to load here: the workers load the model."""

    def ready(self) -> bool:
        return any(state == READY for _, state in self.board.snapshot())

    async def answer(self, request_id: str, body: bytes) -> Reply | None:
        """A worker's reply (None: none within timeout_s)."""
        uid = next(self.uids)
        event = asyncio.Event()
        self.buffer[uid] = ResponseBufferItem(event=event)
        self.queue.put((self.consumer, uid, time.monotonic(), (request_id, body)))
        timer = asyncio.get_running_loop().call_later(self.timeout_s, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()
            item = self.buffer.pop(uid, None)
        if item is None or item.response is None:
            return None
        return item.response[0]


class InlineInference:
    """The model in this process, as worker `slot` of the board, on a predict thread of its own.

    The event loop hands each request to the thread and goes on (reading requests, answering
    /health and /metrics, timing out a prediction that takes too long); the thread answers
    one request at a time, as a worker process would.
    """

    def __init__(self, api: ModelAPI, slot: int, timeout_s: float) -> None:
        self.api = api
        self.slot = slot
        self.timeout_s = timeout_s
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._serve, name="mllib-predict", daemon=True).start()

    def _serve(self) -> None:
        while True:
            future, call, args = self._jobs.get()
            if future.done():  # timed out while queued: its client has had its 504
                continue
            try:
                result = call(*args)
            except BaseException as exc:  # answer() never raises; load() may be interrupted
                result = exc
            self._loop.call_soon_threadsafe(_settle, future, result)

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
        future = self._submit(self.api.answer, request_id, body)
        timer = self._loop.call_later(self.timeout_s, _settle, future, None)
        try:
            return await future
        finally:
            timer.cancel()


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # timed out already, or cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
