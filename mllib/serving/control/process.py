"""A deployment's server as a background process group: started in its own session, stopped
gracefully, and killed whole when it does not stop in time.

LitServe's main process has no SIGTERM handler of its own and its API servers can hang for 30 s
on shutdown after load; our server process turns SIGTERM into its graceful shutdown, and the
stop here escalates to SIGKILL for the whole group and every recorded process of it (see
mllib/serving/pids.py) after a grace period, so a stop always ends every process. Where the
records are lost (a deployment started before they existed), every process carrying the
deployment's marker in its environment is found instead, as a last resort.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mllib.serving import pids

MARKER = "MLLIB_DEPLOYMENT"  # every process of a deployment carries its id
REPLICA_MARKER = pids.SERVER_VAR  # a replica's processes carry "DEPLOYMENT/REPLICA" too
SERVER, FRONT, CONTROLLER, SUPERVISOR = (
    "mllib.serving.server",
    "mllib.serving.server.front",
    "mllib.serving.control.controller",
    "mllib.serving.control.supervisor",
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
    records: Path | None = None,
    role: str = "server",
) -> int:
    """Start `python -m MODULE SPEC` (a server, a front or a controller) in a new session, with
    `python` (default: the one running mllib); returns its pid (= group id). With `records` (a
    deployment's pids folder), it is recorded there, and so are the processes it starts."""
    if records is not None:
        extra_env = {**(extra_env or {}), pids.PIDS_VAR: str(records)}
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
    if records is not None:
        server = (extra_env or {}).get(REPLICA_MARKER, "").rsplit("/", 1)[-1] or None
        pids.record(records, proc.pid, role=role, server=server)
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


def find(
    pid: int,
    marker: str,
    *,
    var: str = MARKER,
    records: Path | None = None,
    server: str | None = None,
) -> list:
    """The live processes of what `pid` started: by their records in `records` (those of
    `server` alone when given); where no records were kept, by `pid`'s group and the environ
    marker (a last resort: it looks through every process of the host)."""
    if not by_records(records):
        return members(pid, marker, var)
    _reap()
    return pids.alive(records, server=server)  # type: ignore[arg-type]


def by_records(records: Path | None) -> bool:
    return records is not None and records.is_dir()


def stop(
    pid: int,
    *,
    marker: str,
    grace_s: float,
    var: str = MARKER,
    records: Path | None = None,
    server: str | None = None,
) -> Stopped:
    """SIGTERM the server (a graceful drain), then SIGKILL whatever is left after `grace_s`.
    When the server's own process is gone (killed), what it left running gets the SIGTERM.
    Its processes are found by their records (`records`, see find()), read again only when
    those found have ended (for any started meanwhile), not at every poll."""
    import psutil

    def look() -> list:
        return find(pid, marker, var=var, records=records, server=server)

    found = look()
    recorded = by_records(records)
    root = [p for p in found if p.pid == pid] if recorded else None
    if recorded:
        terminate_all(root or found)  # the root drains its own; without it, each stops
    else:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            terminate_all(found)
    deadline = time.monotonic() + grace_s
    while found:
        _, still = psutil.wait_procs(found, timeout=max(0.0, deadline - time.monotonic()))
        found = still or look()
        if still or time.monotonic() >= deadline:
            break
    if not found:
        _forget(records)
        return Stopped(True, 0)
    if root is None or root:  # its group (never a group a reused pid leads)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    kill_all(found)
    _forget(records)
    return Stopped(False, len(found))


def stop_recorded(records: Path, *, grace_s: float, server: str | None = None) -> Stopped:
    """SIGTERM every recorded process (but this one; those of `server` alone when given),
    SIGKILL whatever is left after `grace_s`: a deployment given up on by its supervisor, or
    stopped on an agent."""
    import psutil

    found = pids.alive(records, server=server)
    terminate_all(found)
    _, still = psutil.wait_procs(found, timeout=grace_s)
    kill_all(still)
    _forget(records)
    return Stopped(not still, len(still))


def _forget(records: Path | None) -> None:
    """After a stop: children reaped, records of the processes that ended removed."""
    _reap()
    if records is not None:
        pids.prune(records)


def terminate_all(procs: list) -> None:
    """SIGTERM these psutil processes (those gone meanwhile are passed over)."""
    _signal_all(procs, signal.SIGTERM)


def kill_all(procs: list) -> None:
    """SIGKILL these psutil processes and wait (briefly) until they are gone."""
    import psutil

    _signal_all(procs, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)


def _signal_all(procs: list, sig: int) -> None:
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
