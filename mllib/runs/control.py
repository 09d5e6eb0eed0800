"""Cancelling runs, and settling runs whose supervisor died (terminal closed, process killed)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from mllib.registry.runs import RunRecord, active_runs, finish_run, get_run
from mllib.runs.failure import SYSTEM_ERROR
from mllib.runs.spec import discard_secret_params
from mllib.runtime.processes import is_alive, kill_tree
from mllib.workspace import Workspace


def cancel(ws: Workspace, run_id: str, *, timeout_s: float = 30.0) -> RunRecord:
    """Stop a queued or running run and everything it started; returns its final record."""
    from mllib.runs.backends import backend_for

    run = get_run(ws.registry, run_id)
    if run.finished:
        return run
    return backend_for(run).cancel(ws, run, timeout_s=timeout_s)


def cancel_interrupted(ws: Workspace, run_id: str, *, timeout_s: float = 30.0) -> RunRecord:
    """Ctrl-C in the process that recorded a run, before a supervisor took it over: the run ends
    `cancelled`. While this process is still its supervisor it is finished here at once (a
    background supervisor started meanwhile then finds it ended and starts nothing); one that
    already took over is asked to cancel it, as `mllib runs cancel` does."""
    with ws.registry.transaction():
        run = get_run(ws.registry, run_id)
        if run.supervisor_pid == os.getpid():
            finish_run(ws.registry, run_id, "cancelled", None, "cancelled before it started")
            discard_secret_params(Path(run.run_dir or ws.run_dir(run.id)))
    return cancel(ws, run_id, timeout_s=timeout_s)


def cancel_local(ws: Workspace, run: RunRecord, *, timeout_s: float = 30.0) -> RunRecord:
    """The local backend's cancel: through the run's supervisor, else by ending its worker."""
    if is_alive(run.supervisor_pid, run.supervisor_ctime) and run.supervisor_pid != os.getpid():
        os.kill(run.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = get_run(ws.registry, run.id)
            if run.finished or not is_alive(run.supervisor_pid, run.supervisor_ctime):
                break
            time.sleep(0.1)
    run = get_run(ws.registry, run.id)
    if not run.finished:  # the supervisor is gone: finish its job
        _stop_worker(ws, run)
        finish_run(ws.registry, run.id, "cancelled", None, "cancelled")
    return get_run(ws.registry, run.id)


def _stop_worker(ws: Workspace, run: RunRecord) -> None:
    """End what a run whose supervisor is gone left running: its process tree, or its container
    (and the secret params a worker that never started did not take)."""
    discard_secret_params(Path(run.run_dir or ws.run_dir(run.id)))
    if is_alive(run.worker_pid, run.worker_ctime):
        kill_tree(run.worker_pid, 5.0)
    from mllib.runtime import RUNTIMES, get_runtime

    if run.runtime in RUNTIMES:
        reap = getattr(get_runtime(run.runtime), "reap", None)  # optional: see Runtime
        if reap is not None:
            reap(run.id, 5.0)


def reconcile(ws: Workspace) -> list[str]:
    """Settle active runs whose supervisor no longer exists (through their backend); returns the
    ids of those failed here. A local run is failed and its worker ended; a remote run goes on on
    its agent without us, so a new background follower picks it up instead."""
    from mllib.runs.backends import backend_for

    settled = []
    for run in active_runs(ws.registry):
        if is_alive(run.supervisor_pid, run.supervisor_ctime):
            continue
        if backend_for(run).settle(ws, run):
            settled.append(run.id)
    return settled


def settle_local(ws: Workspace, run: RunRecord) -> bool:
    """The local backend's settle: fail the run as a system error and end its worker."""
    run = get_run(ws.registry, run.id)  # it may have finished meanwhile
    if run.finished or is_alive(run.supervisor_pid, run.supervisor_ctime):
        return False
    _stop_worker(ws, run)
    message = (
        f"the mllib process supervising this run (pid {run.supervisor_pid}) ended unexpectedly"
    )
    return finish_run(ws.registry, run.id, "failed", SYSTEM_ERROR, message)
