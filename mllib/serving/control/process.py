"""A deployment's server as a background process group: started in its own session, stopped
gracefully, and killed whole when it does not stop in time.

LitServe's main process has no SIGTERM handler of its own and its API servers can hang for 30 s
on shutdown after load; our server process turns SIGTERM into its graceful shutdown, and the
stop here escalates to SIGKILL for the whole group (and any process carrying the deployment's
marker in its environment) after a grace period, so a stop always ends every process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "MLLIB_DEPLOYMENT"  # every process of a deployment carries its id
REPLICA_MARKER = "MLLIB_REPLICA"  # a replica's processes carry "DEPLOYMENT/REPLICA" too
SERVER, FRONT, CONTROLLER = (
    "mllib.serving.server",
    "mllib.serving.server.front",
    "mllib.serving.control.controller",
)
_children: dict[int, subprocess.Popen] = {}  # started by this process: reaped when they end


def start(
    spec_path: Path,
    log_path: Path,
    *,
    cwd: Path,
    env: dict[str, str],
    marker: str,
    module: str = SERVER,
    extra_env: dict[str, str] | None = None,
    python: str = "",
) -> int:
    """Start `python -m MODULE SPEC` (a server, a front or a controller) in a new session, with
    `python` (default: the one running mllib); returns its pid (= group id)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [python or sys.executable, "-m", module, str(spec_path)],
            cwd=cwd,
            env={
                **os.environ,
                **env,
                **(extra_env or {}),
                MARKER: marker,
                "PYTHONUNBUFFERED": "1",
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def members(pgid: int, marker: str | None = None, var: str = MARKER) -> list:
    """Live processes of group `pgid`, plus any (outside it) whose environment carries `marker`
    (in `var`)."""
    import psutil

    _reap()
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid or (
                marker and proc.pid != os.getpid() and proc.environ().get(var) == marker
            ):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue
    return found


@dataclass(frozen=True)
class Stopped:
    graceful: bool
    killed: int  # processes that needed SIGKILL


def stop(pid: int, *, marker: str, grace_s: float, var: str = MARKER) -> Stopped:
    """SIGTERM the server (a graceful drain), then SIGKILL whatever is left after `grace_s`.
    When the server's own process is gone (killed), what it left running gets the SIGTERM.
    The host's processes are looked through once, then only when those found have ended (for
    any started meanwhile), not at every poll."""
    import psutil

    found = members(pid, marker, var)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        for proc in found:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:  # it went meanwhile
                pass
    deadline = time.monotonic() + grace_s
    while found:
        _, still = psutil.wait_procs(found, timeout=max(0.0, deadline - time.monotonic()))
        found = still or members(pid, marker, var)
        if still or time.monotonic() >= deadline:
            break
    if not found:
        _reap()
        return Stopped(True, 0)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    kill_all(found)
    _reap()
    return Stopped(False, len(found))


def kill_all(procs: list) -> None:
    """SIGKILL these psutil processes and wait (briefly) until they are gone."""
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)
