"""One model server: LitServe with mllib's gateway, worker board and worker loop, run in the
foreground (`mllib serve`) or as a deployment's background process group
(`python -m mllib.serving.server SPEC.json`).

Startup: the model loads (in the API servers themselves inline, else in LitServe's workers) while
the API servers already answer (GET /health says "loading" until every copy is loaded, instead
of LitServe's refused connections); a model that fails to load stops the server with exit code 3
and its error in status.json. Stop: SIGINT or SIGTERM drain and shut down gracefully (LitServe's
main process has no SIGTERM handler of its own); whatever is left of this process's children
after that is killed on the way out. Where this plugs into LitServe's private steps is
litserve_internals.py; what happens at each step is here.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mllib.locks import FileLock
from mllib.serving import pids
from mllib.serving.counters import DRAINING, EMPTY, Counters
from mllib.serving.server import logwriter, metrics
from mllib.serving.server.board import WorkerBoard
from mllib.serving.server.gateway import Gateway, ServingMiddleware
from mllib.serving.server.litserve_internals import LitServerBase, reuse_port
from mllib.serving.server.modelapi import ModelAPI
from mllib.serving.server.openapi import document
from mllib.serving.spec import ServerSpec, write_status

EXIT_LOAD_FAILED = 3
log = logging.getLogger("mllib.serving")
LOCAL_HOSTS = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "0.0.0.0": "0.0.0.0", "::": "::"}


class LoadFailed(Exception):
    """A worker could not load the model."""


class MllibLitServer(LitServerBase):
    """LitServe with mllib's gateway in front of every API server, a watcher for readiness and
    load failures, and inline inference: no worker processes, the API servers load the model
    and predict (one that dies is started again, like a worker).

    In a deployment (inline), its API servers are the replicas its controller scales: the
    watcher starts one more when the counters ask for more (it loads the model before it takes
    connections), and drains the newest when they ask for fewer (it stops accepting and sends
    its clients elsewhere, see DrainingServer)."""

    def __init__(self, spec: ServerSpec, gateway: Gateway) -> None:
        super().__init__(
            gateway.api,
            workers=spec.workers,
            restart_workers=spec.restart_workers,
            drain_s=spec.drain_s,
            model_metadata={
                **spec.labels,
                "run_id": spec.servable.run_id,
                "deployment": spec.deployment,
            },
        )
        self.spec = spec
        self.gateway = gateway
        gateway.server = self
        self.board = gateway.board
        self.worker_processes = not spec.inline
        self.most_api_servers = spec.ceiling
        self.load_before_listening = spec.listen_when_ready
        self.exit_code = 0
        self._restart_lock = threading.Lock()
        self.counters = Counters.open(Path(spec.counters_path)) if spec.counters_path else None
        self.draining: dict[int, float] = {}  # API servers stopping on purpose, since when
        document(self.app, spec)

    def asgi_app(self, app: Any) -> Any:
        # /predict, /health and /metrics never go through FastAPI's and Starlette's middleware.
        return ServingMiddleware(app, self.gateway)

    def api_server_started(self, index: int, load_first: bool) -> None:
        pids.record_self("http")  # before it serves, whatever happens to the server meanwhile
        self.gateway.per_process(index, load_first)

    def starting(self) -> None:
        logwriter.configure(self.spec.log_format, self.spec.labels)  # LitServe reset its logger

    def before_listening(self) -> None:
        """Start the API servers at once (/health says loading meanwhile), unless this server
        takes over a port from another: then it listens only once every worker is ready, so no
        request is routed to it before it can answer. (Inline, each API server loads the model
        before it listens instead.)"""
        if not self.spec.listen_when_ready or self.spec.inline:
            return
        while not self.board.all_ready():
            if self.board.any_failed():
                raise LoadFailed(self.board.error)
            time.sleep(0.05)

    def started(self) -> None:
        threading.Thread(target=self._watch, daemon=True, name="mllib-watch").start()

    def stopping(self) -> None:
        # LitServe's monitor (and ours, inline) would otherwise restart what this terminates.
        with self._restart_lock:
            self.request_stop()
            self._close_sockets()

    def load_failed(self, error: str) -> None:
        log.error(f"the model could not be loaded: {error}", extra={"event": "load_failed"})
        write_status(Path(self.spec.state_dir), "failed", error=error)
        self.exit_code = EXIT_LOAD_FAILED

    def _listening(self) -> bool:
        """Whether an API server listens on the socket; then this process lets go of it, so it
        closes when they stop and the kernel routes no connection to it (a newer server may
        share the port). Inline with restarts, it keeps the socket to start API servers on
        again, and closes it first thing when stopping."""
        if not all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for s in self.sockets):
            return False
        if not (self.spec.inline and (self.spec.restart_workers or self.counters)):
            self._close_sockets()
        return True

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def _watch(self) -> None:
        """Write status.json when every worker is ready; stop the server if one failed to load;
        inline, replace an API server that died."""
        state_dir = Path(self.spec.state_dir)
        ready = False
        while not self.stop_requested:
            if self.board.any_failed():
                self.load_failed(self.board.error)
                self.request_stop()
                return
            if not ready and self.board.all_ready() and self._listening():
                ready = True
                write_status(state_dir, "ready", url=self.spec.url)
                log.info(f"ready at {self.spec.url}", extra={"event": "ready"})
            if self.spec.inline:
                self._replace_dead_api_servers()
                if self.counters is not None and ready:
                    self._scale()
            time.sleep(0.05)

    def _scale(self) -> None:
        """Run as many API servers as the controller wants (inline, in a deployment)."""
        wanted = self.counters.desired
        running = sorted(i for i in self.api_servers if i not in self.draining)
        if wanted <= 0 or wanted == len(running):
            return
        with self._restart_lock:
            if self.stop_requested:
                return
            if wanted > len(running):
                index = next(i for i in range(self.board.workers) if i not in self.api_servers)
                self.board.take(index)
                self.api_servers[index] = self.start_api_server(index, load_first=True)
                log.info(
                    f"started API server {index} (the deployment wants {wanted})",
                    extra={"event": "process_started", "worker": index},
                )
            elif len(running) > 1:
                index = running[-1]
                self.draining[index] = time.monotonic()
                self.counters.process(index).set_state(DRAINING)
                os.kill(self.api_servers[index].pid, signal.SIGTERM)
                log.info(
                    f"draining API server {index} (the deployment wants {wanted})",
                    extra={"event": "process_draining", "worker": index},
                )

    def _replace_dead_api_servers(self) -> None:
        """Inline, an API server is a worker: one that died (a crash in predict) is started
        again, loading the model before it listens (503 from /health meanwhile)."""
        for index, proc in list(self.api_servers.items()):
            if proc.is_alive():
                continue
            with self._restart_lock:
                if self.stop_requested:
                    return
                if index in self.draining:  # stopped on purpose: its slot is free again
                    proc.join()
                    del self.api_servers[index], self.draining[index]
                    self.board.release(index)
                    if self.counters is not None:
                        self.counters.process(index).set_state(EMPTY)
                    continue
                reason = f"API server {index} (pid {proc.pid}) died with exit code {proc.exitcode}"
                if not self.spec.restart_workers:
                    log.error(f"{reason}; shutting down", extra={"event": "worker_died"})
                    self.request_stop()
                    return
                log.warning(f"{reason}; starting it again", extra={"event": "worker_died"})
                self.api_servers[index] = self.start_api_server(index, load_first=True)


def _stop_on_signals(board: WorkerBoard) -> None:
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
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _hold_venv(spec: ServerSpec) -> FileLock | None:
    """A server run with a venv's python holds the venv (shared) while it runs, so the cache
    never removes it from under the server (mllib.runtime.venvs)."""
    if not spec.python_env.lock:
        return None
    lock = FileLock(Path(spec.python_env.lock), record_pid=False)
    return lock if lock.acquire(0, shared=True) else None


def run_server(spec: ServerSpec) -> int:
    """Serve until stopped; returns the exit code (0, or 3 when the model could not load)."""
    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    # Before prometheus_client is imported; a replica adds to its deployment's shared folder.
    if spec.metrics_dir:
        metrics.use_dir(Path(spec.metrics_dir), afresh=False)
    else:
        metrics.use_dir(state_dir / "metrics")
    logwriter.configure(spec.log_format, spec.labels)
    write_status(state_dir, "starting")
    _venv = _hold_venv(spec)  # held until this process ends

    board = WorkerBoard(spec.ceiling, spec.workers)
    gateway = Gateway(spec, board, ModelAPI(spec, board))
    server = MllibLitServer(spec, gateway)
    metrics.publish_info(spec.labels, spec.servable.run_id, spec.deployment)
    _stop_on_signals(board)
    gc.collect()
    gc.freeze()  # what is loaded now is shared by the forked API servers and never freed
    try:
        with reuse_port(spec.reuse_port):
            server.run(
                host=LOCAL_HOSTS.get(spec.host, spec.host),
                port=spec.port,
                num_api_servers=spec.api_servers,
                log_level="info",
                generate_client_file=False,
                access_log=False,
                log_config=logwriter.uvicorn_log_config(spec.log_format, spec.labels),
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
