"""Every use of LitServe's and uvicorn's private APIs, in one place.

Written against LitServe 0.2.19 and uvicorn 0.55.0; REQUIREMENTS are the ranges allowed (the same
as pyproject.toml's). LitServe's private methods and attributes change between its releases:
tests/serving/test_litserve_internals.py fails when the installed versions leave these ranges, or
when a name, signature or behaviour this module relies on is not what it was written against.
Upgrading LitServe means rereading this module against the new release (and that test).

What is used, and why (the rest of mllib.serving.server uses LitServe's public API only):
- LitServer's private steps of `run()`, overridden in LitServerBase: `_init_manager` (no
  Manager process: pipes and shared memory instead, see PipeTransport), `launch_inference_worker`
  (none inline), `verify_worker_status` (do not wait for the workers unless taking over a port),
  `_start_server` and `_prepare_app_run` (fork mllib's API servers, gateway in front),
  `_start_worker_monitoring` and `_perform_graceful_shutdown` (mllib's watcher; no restarts
  while stopping), and the attributes they keep (`transport_config`, `workers_setup_status`,
  `_shutdown_event`, `litapi_request_queues`, `_logger_connector`, `_transport`,
  `uvicorn_graceful_timeout`, `app.response_queue_id`, `app.user_middleware`).
- `litserve.server._Server`, the uvicorn Server LitServe forks per API server (ApiServer), and
  uvicorn's `Server.servers` and `shutdown()` (stop accepting before closing idle connections;
  DrainingServer, which a deployment's front runs too).
- LitServe's worker protocol: `LitLoop.run`'s arguments, the request tuple on the request queue,
  the reply tuple `response_queue_to_buffer` reads, `ResponseBufferItem`, `MessageTransport`,
  and `LITSERVE_WORKER_ID` (ModelLoop, PipeTransport, WorkerChannel).
- `uvicorn.Config.bind_socket`, replaced while LitServe binds (SO_REUSEPORT; reuse_port), and
  uvicorn's `HttpToolsProtocol`, subclassed for one write per response (server/wire.py), to
  close a connection after its next response (its `cycle`, `cycle.keep_alive`,
  `cycle.response_complete`, `on_headers_complete` and `connection_lost`), and to answer
  /predict as a wire.Exchange in place of its request cycle (its parser callbacks, `url`,
  `headers`, `expect_100_continue`, `pipeline`, `flow`, `_start_asgi_task`,
  `on_response_complete`, `_unset_keepalive_if_required` and `server_state.default_headers`).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import multiprocessing as mp
import os
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any, ClassVar

# Only server processes import this module, never the CLI's startup path.
import litserve as ls  # noqa: TID253
import uvicorn  # noqa: TID253
from litserve.loops.base import LitLoop  # noqa: TID253
from litserve.transport.base import MessageTransport  # noqa: TID253
from litserve.utils import LitAPIStatus, LoopResponseType, ResponseBufferItem  # noqa: TID253
from starlette.middleware.gzip import GZipMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: TID253

from mllib.serving import pids
from mllib.serving.server.wire import Answering, Exchange, HeldHeadTransport

REQUIREMENTS = {"litserve": ">=0.2.19,<0.2.20", "uvicorn": ">=0.29,<0.56"}
API_PATH = "/predict"  # the one LitAPI's path: LitServe keys its request queue by it
Reply = tuple[int, bytes]  # HTTP status and JSON body


class _NoManager:
    """Stands in for the Manager LitServe shuts down at the end."""

    def shutdown(self) -> None:
        pass


class LitServerBase(ls.LitServer):
    """A LitServer whose private start-up and shutdown steps call these hooks instead.

    Subclasses say whether LitServe's worker processes run (`worker_processes`), wrap each API
    server's app (`asgi_app`), set up each API server's process (`api_server_started`), and act
    at `before_listening`, `started` and `stopping`. `start_api_server` forks one API server
    (again, to replace one that died). Everything else is LitServe's own `run()`.
    """

    def __init__(
        self,
        api: ls.LitAPI,
        *,
        workers: int,
        restart_workers: bool,
        drain_s: float,
        model_metadata: dict[str, Any],
    ) -> None:
        super().__init__(
            api,
            accelerator="cpu",
            workers_per_device=workers,
            timeout=False,
            model_metadata=model_metadata,
            restart_workers=restart_workers,
        )
        # Predictions are small JSON: compressing them costs more than it saves.
        self.app.user_middleware = [
            m for m in self.app.user_middleware if m.cls is not GZipMiddleware
        ]
        self.uvicorn_graceful_timeout = drain_s
        self.sockets: list[socket.socket] = []  # the listening sockets LitServe bound
        self.api_servers: dict[int, Any] = {}  # index -> process; LitServe's shutdown ends them
        self._uvicorn_args: dict[str, Any] = {}

    # -- hooks -------------------------------------------------------------------------------
    worker_processes = True  # False: no LitServe inference workers (the API servers predict)
    most_api_servers = 0  # API servers it may start beyond run()'s (each gets a reply pipe)
    load_before_listening = False  # API servers started with run() load before they listen

    def asgi_app(self, app: Any) -> Any:
        """The ASGI app an API server serves, given LitServe's FastAPI app."""
        return app

    def api_server_started(self, index: int, load_first: bool) -> None:
        """In API server `index`'s own process, before it serves."""

    def starting(self) -> None:
        """When `run()` sets up its queues, before any process starts (and just after LitServe
        configured its own logging)."""

    def before_listening(self) -> None:
        """After the workers started, before the API servers start listening."""

    def started(self) -> None:
        """Once the API servers were started (a watcher may start here)."""

    def stopping(self) -> None:
        """First thing when LitServe shuts down."""

    # -- what subclasses call ----------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._shutdown_event.is_set()

    def request_stop(self) -> None:
        """Make LitServe's `run()` shut down (as a worker death does without restarts)."""
        self._shutdown_event.set()

    def start_api_server(self, index: int, *, load_first: bool) -> Any:
        """Fork API server `index` on LitServe's sockets; returns its process."""
        self.app.response_queue_id = index  # the pipe its replies arrive on (worker mode)
        app = copy.copy(self.app)
        self._prepare_app_run(app)
        config = http_config(
            self.asgi_app(app),
            host="0.0.0.0",  # unused: it serves the sockets it is given
            drain_s=self.uvicorn_graceful_timeout,
            **self._uvicorn_args,
        )
        server = ApiServer(config, started=lambda i: self.api_server_started(i, load_first))
        proc = mp.get_context("fork").Process(
            target=server.run, args=(index, self.sockets), name=f"LitServer-{index}"
        )
        proc.start()
        pids.record_child(proc.pid, "http")
        return proc

    # -- LitServer's private steps -----------------------------------------------------------
    def _init_manager(self, num_api_servers: int) -> Any:
        """What LitServe keeps in a `multiprocessing.Manager` process, without that process.

        Its queues are replaced by pipes (PipeTransport, request_queue); worker readiness is on
        mllib's WorkerBoard; the shutdown flag is only waited on here. A Manager process would
        also inherit the listening socket and keep it open after the API servers stop, so
        connections routed to it would wait there and then be reset.
        """
        num_api_servers = max(num_api_servers, self.most_api_servers)
        self.transport_config.num_consumers = num_api_servers
        self.workers_setup_status = {}  # LitServe's bookkeeping; the WorkerBoard is the truth
        self._shutdown_event = threading.Event()
        for lit_api in self.litapi_connector:
            self.litapi_request_queues[lit_api.api_path] = request_queue()
        self._logger_connector.run(self)
        self._transport = PipeTransport(num_api_servers)
        self.starting()
        return _NoManager()

    def launch_inference_worker(self, lit_api: ls.LitAPI) -> list:
        return super().launch_inference_worker(lit_api) if self.worker_processes else []

    def verify_worker_status(self) -> None:
        self.before_listening()

    def _start_server(
        self, port: int, num: int, log_level: str, sockets: list, *args: Any, **kwargs: Any
    ) -> dict[int, Any]:
        self.sockets = list(sockets)
        self._uvicorn_args = dict(port=port, log_level=log_level, **kwargs)
        for index in range(num):
            self.api_servers[index] = self.start_api_server(
                index, load_first=self.load_before_listening
            )
        return self.api_servers

    def _start_worker_monitoring(self, manager: Any, uvicorn_workers: Any) -> None:
        super()._start_worker_monitoring(manager, uvicorn_workers)
        self.started()

    def _perform_graceful_shutdown(
        self, manager: Any, uvicorn_workers: Any, shutdown_reason: str = "normal"
    ) -> None:
        self.stopping()
        super()._perform_graceful_shutdown(manager, uvicorn_workers, shutdown_reason)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains its keep-alive connections before it shuts down.

    uvicorn's shutdown closes the listening socket and, in the same step, closes every connection
    without a request in progress: a client that was just sending its next request on one loses
    it. Here the process first stops accepting (the kernel sends new connections to the other
    processes sharing the socket, or to the deployment that replaces this one), then answers
    the next request of each open connection with `Connection: close`, so its client goes
    elsewhere for the one after, and waits (up to `drain_s`) for the connections to close
    that way; uvicorn's shutdown then closes whatever stayed idle all along.
    """

    async def shutdown(self, sockets: list | None = None) -> None:
        for server in self.servers:
            server.close()
        draining = getattr(self.config.app, "draining", None)
        if draining is not None:
            draining()
        OneWriteHttpToolsProtocol.close_all_after_response()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        await asyncio.sleep(ACCEPT_DRAIN_S)
        while OneWriteHttpToolsProtocol.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await super().shutdown(sockets)


ACCEPT_DRAIN_S = 0.1  # connections accepted a moment before closing the listener send first


def http_config(app: Any, *, drain_s: float, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's settings for one of mllib's HTTP processes: one write per response."""
    return uvicorn.Config(
        app=app,
        http=OneWriteHttpToolsProtocol,
        proxy_headers=False,  # nothing here reads the client's address
        timeout_graceful_shutdown=drain_s,
        **kwargs,
    )


class ApiServer(DrainingServer, ls.server._Server):
    """One API server process: calls `started(index)` in its process before it serves; stops
    accepting before it shuts down (DrainingServer)."""

    def __init__(self, config: uvicorn.Config, *, started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._started = started

    def run(self, worker_id: int, sockets: list | None = None) -> None:
        self._started(worker_id)
        super().run(worker_id, sockets)


def current_worker_id() -> int:
    """The number LitServe gave this inference worker (0 outside one)."""
    return int(os.environ.get("LITSERVE_WORKER_ID", "0"))


class ModelLoop(LitLoop):
    """A worker's loop: take (request id, body) from the request queue, answer it with the
    LitAPI's `answer_batch([(request id, body), ...]) -> [(status, body), ...]`, reply on each
    request's API server pipe. For a model that batches (`batches`), the requests waiting (and
    those arriving within its `batch_timeout_s`) are taken together, up to its `max_batch`. A
    request queued longer than the LitAPI's `queue_timeout_s` has had its 504: skipped."""

    def run(
        self,
        lit_api: Any,
        device: Any,
        worker_id: int,
        request_queue: Any,
        transport: Any,
        workers_setup_status: Any,
        callback_runner: Any,
    ) -> None:
        while True:
            try:
                item = request_queue.get(timeout=1.0)
            except Empty:
                continue
            if item is None:
                return
            items = [item, *_more(lit_api, request_queue)]
            last = items[-1] is None
            timeout = lit_api.queue_timeout_s
            now = time.monotonic()
            live = [
                it for it in items if it is not None and (timeout is None or now - it[2] <= timeout)
            ]  # the others: their API server answered 504 and stopped waiting (one clock)
            replies = lit_api.answer_batch([it[3] for it in live]) if live else []
            for (response_queue_id, uid, _, _), reply in zip(live, replies, strict=True):
                transport.send(
                    (uid, (reply, LitAPIStatus.OK, LoopResponseType.REGULAR, worker_id)),
                    consumer_id=response_queue_id,
                )
            if last:
                return


def _more(lit_api: Any, request_queue: Any) -> list:
    """The requests to answer with the one just taken: none for a model that does not batch;
    else those waiting and those arriving within its batch_timeout_s, up to its max_batch
    (a None, the stop signal, ends the list)."""
    if not (lit_api.batches and lit_api.max_batch > 1):
        return []
    more: list = []
    until = time.monotonic() + lit_api.batch_timeout_s
    while len(more) + 1 < lit_api.max_batch:
        wait = until - time.monotonic()
        try:
            item = request_queue.get(timeout=wait) if wait > 0 else request_queue.get_nowait()
        except Empty:
            break
        more.append(item)
        if item is None:
            break
    return more


class WorkerChannel:
    """How an API server asks LitServe's inference workers: the request goes on LitServe's
    request queue; the worker's reply comes back on this API server's pipe, into LitServe's
    response buffer (its `response_queue_to_buffer` task, started by LitServe's lifespan)."""

    def __init__(self, server: ls.LitServer) -> None:
        self.queue = server._get_request_queue(API_PATH)
        self.consumer = server.app.response_queue_id
        self.buffer = server.response_buffer
        self.uids = itertools.count()

    async def ask(self, request_id: str, body: bytes, timeout_s: float) -> Reply | None:
        """A worker's reply (None: none within timeout_s)."""
        uid = next(self.uids)
        event = asyncio.Event()
        self.buffer[uid] = ResponseBufferItem(event=event)
        self.queue.put((self.consumer, uid, time.monotonic(), (request_id, body)))
        timer = asyncio.get_running_loop().call_later(timeout_s, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()
            item = self.buffer.pop(uid, None)
        if item is None or item.response is None:
            return None
        return item.response[0]


class PipeTransport(MessageTransport):
    """Replies from workers to API server `consumer_id`, one pipe per API server.

    LitServe 0.2.19 passes requests and replies through `multiprocessing.Manager` queues: every
    put and get is a round trip to the Manager process, four per request, which is most of its
    per-request cost on a small model. Here requests go through one `multiprocessing.Queue`
    (request_queue: a pipe; puts never block the event loop) and each API server gets its replies
    on its own pipe, read by its event loop when the pipe is readable. Workers write whole pickled
    messages under a per-pipe lock (several workers share a pipe).
    """

    def __init__(self, consumers: int) -> None:
        ctx = mp.get_context("spawn")
        self._pipes = [ctx.Pipe(duplex=False) for _ in range(consumers)]
        self._locks = [ctx.Lock() for _ in range(consumers)]
        self._inbox: asyncio.Queue | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_pipes": self._pipes, "_locks": self._locks, "_inbox": None}

    def send(self, item: Any, consumer_id: int) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with self._locks[consumer_id]:
            self._pipes[consumer_id][1].send_bytes(data)

    async def areceive(self, consumer_id: int, timeout: float | None = None, block: bool = True):
        if self._inbox is None:
            self._inbox = asyncio.Queue()
            reader = self._pipes[consumer_id][0]
            inbox = self._inbox

            def readable() -> None:
                while reader.poll():
                    inbox.put_nowait(pickle.loads(reader.recv_bytes()))

            asyncio.get_running_loop().add_reader(reader.fileno(), readable)
        return await self._inbox.get()

    def close(self, **kwargs: Any) -> None:
        self._inbox = None


def request_queue() -> Any:
    """The queue API servers put requests on and workers take them from."""
    return mp.get_context("spawn").Queue()


@contextmanager
def reuse_port(enabled: bool) -> Iterator[None]:
    """Bind the listening socket with SO_REUSEPORT, so a new deployment can take over the port of
    the one it replaces without a moment of refused connections (uvicorn has no option for it;
    LitServer.run binds through `uvicorn.Config.bind_socket`)."""
    if not enabled:
        yield
        return
    original = uvicorn.Config.bind_socket

    def bind_socket(config: Any) -> socket.socket:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        sock.set_inheritable(True)
        return sock

    uvicorn.Config.bind_socket = bind_socket
    try:
        yield
    finally:
        uvicorn.Config.bind_socket = original


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a HeldHeadTransport: uvicorn writes a response's head
    and body separately; this sends both in one write (server/wire.py says why).

    It also keeps the process's open connections, so some can be asked to close after their
    next response (`Connection: close`): a draining process sends its clients elsewhere that
    way, and a process holding more than its share of connections hands some to the others."""

    live: ClassVar[set[OneWriteHttpToolsProtocol]] = set()
    on_connection: ClassVar[Callable[[int], None] | None] = None  # called with +1 / -1
    answering: ClassVar[Answering | None] = None  # the requests answered as Exchanges

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeldHeadTransport(transport, self.loop))  # type: ignore[arg-type]
        self.close_after = False
        OneWriteHttpToolsProtocol.live.add(self)
        if self.on_connection is not None:
            self.on_connection(1)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self in OneWriteHttpToolsProtocol.live:
            OneWriteHttpToolsProtocol.live.discard(self)
            if self.on_connection is not None:
                self.on_connection(-1)

    def on_headers_complete(self) -> None:
        answering = self.answering
        if answering is not None and not self.expect_100_continue:
            path = self.url.partition(b"?")[0]
            if path in answering.paths and not self.parser.should_upgrade():
                self._exchange(answering, path)
                return
        super().on_headers_complete()
        if self.close_after and self.cycle is not None:
            self.cycle.keep_alive = False

    def _exchange(self, answering: Answering, path: bytes) -> None:
        """This request, answered as an Exchange: now, or after those before it (pipelined)."""
        parser = self.parser
        exchange = Exchange(
            parser.get_method().decode("ascii"),
            path.decode("ascii"),
            dict(self.headers),
            not self.close_after
            and parser.get_http_version() != "1.0"
            and parser.should_keep_alive(),
            answering,
            self.transport,  # type: ignore[arg-type]
            self.server_state.default_headers,
            self.on_response_complete,
        )
        existing = self.cycle
        self.cycle = exchange  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._unset_keepalive_if_required()
            exchange.start()
        else:
            self.flow.pause_reading()
            self.pipeline.appendleft((exchange, None))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if isinstance(cycle, Exchange):
            self._unset_keepalive_if_required()
            cycle.start(later=True)
            return
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, Exchange):
            cycle.received(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, Exchange):
            cycle.ended()
        else:
            super().on_message_complete()

    def close_after_response(self) -> None:
        """Answer the current (or next) request with `Connection: close`, then close."""
        self.close_after = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False

    @classmethod
    def close_all_after_response(cls) -> None:
        for connection in list(cls.live):
            connection.close_after_response()

    @classmethod
    def hand_over(cls, count: int) -> int:
        """Ask up to `count` connections not asked yet to close after their next response."""
        asked = 0
        for connection in list(cls.live):
            if asked >= count:
                break
            if not connection.close_after:
                connection.close_after_response()
                asked += 1
        return asked

    @classmethod
    def busy(cls) -> bool:
        """Whether any connection of this process is still open."""
        return bool(cls.live)
