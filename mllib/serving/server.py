"""One model server: LitServe with mllib's gateway, transport and worker loop, run in the
foreground (`mllib serve`) or as a deployment's background process group
(`python -m mllib.serving.server SPEC.json`).

Startup: the model loads (in the API servers themselves inline, else in LitServe's workers) while
the API servers already answer (GET /health says "loading" until every copy is loaded, instead
of LitServe's refused connections); a model that fails to load stops the server with exit code 3
and its error in status.json. Stop: SIGINT or
SIGTERM drain and shut down gracefully (LitServe's main process has no SIGTERM handler of its
own); whatever is left of this process's children after that is killed on the way out.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Only server processes import this module, never the CLI's startup path.
import litserve as ls  # noqa: TID253
import uvicorn  # noqa: TID253
from starlette.middleware.gzip import GZipMiddleware

from mllib.serving import logs, metrics
from mllib.serving.gateway import Gateway, ServingMiddleware
from mllib.serving.modelapi import ModelAPI, WorkerSpec
from mllib.serving.openapi import document
from mllib.serving.process import kill_all
from mllib.serving.ratelimit import SharedBuckets
from mllib.serving.serverspec import ServerSpec, url_of, write_status
from mllib.serving.settings import INLINE
from mllib.serving.state import WorkerBoard
from mllib.serving.transport import PipeTransport, request_queue
from mllib.serving.wire import OneWriteHttpToolsProtocol

EXIT_LOAD_FAILED = 3
ACCEPT_DRAIN_S = 0.3  # between closing the listener and closing idle connections
log = logging.getLogger("mllib.serving")
LOCAL_HOSTS = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "0.0.0.0": "0.0.0.0", "::": "::"}


class _NoManager:
    """Stands in for the Manager LitServe shuts down at the end."""

    def shutdown(self) -> None:
        pass


class LoadFailed(Exception):
    """A worker could not load the model."""


class MllibLitServer(ls.LitServer):
    """LitServer with pipes for queues, no start-up wait, a watcher for load failures, and
    inline inference: no worker processes, the API servers load the model and predict."""

    def __init__(self, api: ModelAPI, spec: ServerSpec, gateway: Gateway) -> None:
        super().__init__(
            api,
            accelerator="cpu",
            workers_per_device=spec.workers,
            timeout=False,
            model_metadata={**spec.labels, "run_id": spec.run_id, "deployment": spec.deployment},
            restart_workers=spec.restart_workers,
        )
        # Predictions are small JSON: compressing them costs more than it saves.
        self.app.user_middleware = [
            m for m in self.app.user_middleware if m.cls is not GZipMiddleware
        ]
        self.uvicorn_graceful_timeout = spec.drain_s
        self.spec = spec
        self.gateway = gateway
        self.inline = spec.inference == INLINE
        self.board = api.board
        self.exit_code = 0
        self._sockets: list[socket.socket] = []
        self._api_servers: dict[int, Any] = {}
        self._uvicorn_args: dict[str, Any] = {}
        self._restart_lock = threading.Lock()
        document(self.app, spec)

    def _init_manager(self, num_api_servers: int) -> Any:
        """What LitServe keeps in a `multiprocessing.Manager` process, without that process.

        Its queues are replaced by pipes (see transport.py); worker readiness and liveness are
        on the WorkerBoard; the shutdown flag is only waited on here. A Manager process would
        also inherit the listening socket and keep it open after the API servers stop, so
        connections routed to it would wait there and then be reset.
        """
        self.transport_config.num_consumers = num_api_servers
        self.workers_setup_status = {}  # LitServe's bookkeeping; the WorkerBoard is the truth
        self._shutdown_event = threading.Event()
        for lit_api in self.litapi_connector:
            self.litapi_request_queues[lit_api.api_path] = request_queue()
        self._logger_connector.run(self)
        self._transport = PipeTransport(num_api_servers)
        logs.configure(self.spec.log_format, self.spec.labels)  # LitServe reset its logger
        return _NoManager()

    def launch_inference_worker(self, lit_api: ls.LitAPI) -> list:
        """Inline, there are no worker processes: each API server holds the model."""
        return [] if self.inline else super().launch_inference_worker(lit_api)

    def load_failed(self, error: str) -> None:
        log.error(f"the model could not be loaded: {error}", extra={"event": "load_failed"})
        write_status(Path(self.spec.state_dir), "failed", error=error)
        self.exit_code = EXIT_LOAD_FAILED

    def _perform_graceful_shutdown(
        self, manager: Any, uvicorn_workers: Any, reason: str = "normal"
    ) -> None:
        # LitServe's monitor (and ours, inline) would otherwise restart what this terminates.
        with self._restart_lock:
            self._shutdown_event.set()
            self._close_sockets()
        super()._perform_graceful_shutdown(manager, uvicorn_workers, reason)

    def verify_worker_status(self) -> None:
        """Start the API servers at once (/health says loading meanwhile), unless this server
        takes over a port from another: then it listens only once every worker is ready, so no
        request is routed to it before it can answer. (Inline, each API server loads the model
        before it listens instead.)"""
        if not self.spec.listen_when_ready or self.inline:
            return
        while not self.board.all_ready():
            if self.board.any_failed():
                raise LoadFailed(self.board.error)
            time.sleep(0.05)

    def _start_server(
        self, port: int, num: int, log_level: str, sockets: list, *args: Any, **kwargs: Any
    ) -> dict[int, Any]:
        """Fork the API servers, as LitServe does, but as mllib's ApiServer."""
        self._sockets = list(sockets)  # see _listening
        self._uvicorn_args = dict(port=port, log_level=log_level, **kwargs)
        for index in range(num):
            self._api_servers[index] = self._start_api_server(
                index, load_first=self.spec.listen_when_ready
            )
        return self._api_servers  # LitServe's shutdown terminates what is in here

    def _start_api_server(self, index: int, *, load_first: bool) -> Any:
        self.app.response_queue_id = index  # the pipe its replies arrive on (worker mode)
        app = copy.copy(self.app)
        self._prepare_app_run(app)
        config = uvicorn.Config(
            # The gateway in front of LitServe's FastAPI app: /predict, /health and /metrics
            # never go through FastAPI's and Starlette's middleware stack.
            app=ServingMiddleware(app, self.gateway),
            host="0.0.0.0",  # unused: it serves the sockets it is given
            http=OneWriteHttpToolsProtocol,
            proxy_headers=False,  # nothing here reads the client's address
            timeout_graceful_shutdown=self.uvicorn_graceful_timeout,
            **self._uvicorn_args,
        )
        server = ApiServer(config, gateway=self.gateway, load_first=load_first)
        proc = mp.get_context("fork").Process(
            target=server.run, args=(index, self._sockets), name=f"LitServer-{index}"
        )
        proc.start()
        return proc

    def _listening(self) -> bool:
        """Whether an API server listens on the socket; then this process lets go of it, so it
        closes when they stop and the kernel routes no connection to it (a newer server may
        share the port). Inline with restarts, it keeps the socket to start API servers on
        again, and closes it first thing when stopping."""
        if not all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for s in self._sockets):
            return False
        if not (self.inline and self.spec.restart_workers):
            self._close_sockets()
        return True

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def _start_worker_monitoring(self, manager: Any, uvicorn_workers: Any) -> None:
        super()._start_worker_monitoring(manager, uvicorn_workers)
        threading.Thread(target=self._watch, daemon=True, name="mllib-watch").start()

    def _watch(self) -> None:
        """Write status.json when every worker is ready; stop the server if one failed to load;
        inline, replace an API server that died."""
        state_dir = Path(self.spec.state_dir)
        ready = False
        while not self._shutdown_event.is_set():
            if self.board.any_failed():
                self.load_failed(self.board.error)
                self._shutdown_event.set()
                return
            if not ready and self.board.all_ready() and self._listening():
                ready = True
                write_status(state_dir, "ready", url=url_of(self.spec))
                log.info(f"ready at {url_of(self.spec)}", extra={"event": "ready"})
            if self.inline:
                self._replace_dead_api_servers()
            time.sleep(0.05)

    def _replace_dead_api_servers(self) -> None:
        """Inline, an API server is a worker: one that died (a crash in predict) is started
        again, loading the model before it listens (503 from /health meanwhile)."""
        for index, proc in list(self._api_servers.items()):
            if proc.is_alive():
                continue
            with self._restart_lock:
                if self._shutdown_event.is_set():
                    return
                reason = f"API server {index} (pid {proc.pid}) died with exit code {proc.exitcode}"
                if not self.spec.restart_workers:
                    log.error(f"{reason}; shutting down", extra={"event": "worker_died"})
                    self._shutdown_event.set()
                    return
                log.warning(f"{reason}; starting it again", extra={"event": "worker_died"})
                self._api_servers[index] = self._start_api_server(index, load_first=True)


class ApiServer(ls.server._Server):
    """One API server process: sets the gateway up for itself, then serves; stops accepting
    before it shuts down.

    uvicorn's shutdown closes the listening socket and, in the same step, closes every connection
    without a request yet: one accepted a moment earlier loses its request. Pausing in between lets
    those requests arrive and be answered, while the kernel sends new connections to the
    listener of the deployment that replaces this one.
    """

    def __init__(self, config: uvicorn.Config, *, gateway: Gateway, load_first: bool) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.load_first = load_first

    def run(self, worker_id: int, sockets: list | None = None) -> None:
        self.gateway.per_process(worker_id, self.load_first)
        super().run(worker_id, sockets)

    async def shutdown(self, sockets: list | None = None) -> None:
        for server in self.servers:
            server.close()
        await asyncio.sleep(ACCEPT_DRAIN_S)
        await super().shutdown(sockets)


@contextmanager
def _reuse_port(enabled: bool) -> Iterator[None]:
    """Bind the listening socket with SO_REUSEPORT, so a new deployment can take over the port of
    the one it replaces without a moment of refused connections (uvicorn has no option for it)."""
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


def _stop_on_signals(board: Any) -> None:
    """SIGTERM and SIGINT mark the server draining, then stop it gracefully (KeyboardInterrupt
    is what makes LitServe shut down in order)."""

    main = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main:  # a forked API server, after uvicorn's own graceful shutdown
            raise SystemExit(0)
        board.drain()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _end_children(grace_s: float) -> None:
    """Kill whatever this process started that is still running (nothing must outlive a server)."""
    from multiprocessing import resource_tracker

    import psutil

    tracker = resource_tracker._resource_tracker._pid  # ends by itself once this process exits
    children = [c for c in psutil.Process().children(recursive=True) if c.pid != tracker]
    _, alive = psutil.wait_procs(children, timeout=grace_s)
    kill_all(alive)


def run_server(spec: ServerSpec) -> int:
    """Serve until stopped; returns the exit code (0, or 3 when the model could not load)."""
    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    metrics.use_dir(state_dir / "metrics")  # before prometheus_client is imported
    logs.configure(spec.log_format, spec.labels)
    write_status(state_dir, "starting")

    board = WorkerBoard(spec.workers)
    worker = WorkerSpec(
        bundle_dir=spec.bundle_dir,
        model_file=spec.model_file,
        model_class=spec.model_class,
        labels=spec.labels,
        log_format=spec.log_format,
        show_errors=spec.show_errors,
        timeout_s=spec.timeout_s,
    )
    api = ModelAPI(worker, board)
    gateway = Gateway(
        labels=spec.labels,
        board=board,
        timeout_s=spec.timeout_s,
        max_body_bytes=spec.max_body_bytes,
        log_format=spec.log_format,
        deployment=spec.deployment,
        registry_path=Path(spec.registry_path) if spec.registry_path else None,
        key_refresh_s=spec.key_refresh_s,
        buckets=SharedBuckets(flag_interval_s=spec.flag_interval_s) if spec.registry_path else None,
        inference=spec.inference,
        api=api,
    )
    server = MllibLitServer(api, spec, gateway)
    gateway.server = server
    metrics.publish_info(spec.labels, spec.run_id, spec.deployment)
    _stop_on_signals(board)
    gc.collect()
    gc.freeze()  # what is loaded now is shared by the forked API servers and never freed
    try:
        with _reuse_port(spec.reuse_port):
            server.run(
                host=LOCAL_HOSTS.get(spec.host, spec.host),
                port=spec.port,
                num_api_servers=spec.api_servers,
                log_level="info",
                generate_client_file=False,
                access_log=False,
                log_config=logs.uvicorn_log_config(spec.log_format, spec.labels),
            )
    except KeyboardInterrupt:
        pass
    except LoadFailed as exc:
        server.load_failed(str(exc))
    finally:
        _end_children(grace_s=2.0)
        if server.exit_code == 0:
            write_status(state_dir, "stopped")
    return server.exit_code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mllib.serving.server SPEC.json", file=sys.stderr)
        return 2
    return run_server(ServerSpec.read(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
