"""Process trees: ending one completely, and telling whether a recorded pid is still that process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

_own: tuple[int, float | None] = (0, None)  # this process's pid and start time, read once


def create_time(pid: int) -> float | None:
    """When `pid` started (to recognise it later despite pid reuse); None if it does not exist.
    This process's own is read once (each run records it as its supervisor's, twice)."""
    global _own
    if pid == _own[0]:
        return _own[1]
    import psutil

    try:
        found = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if pid == os.getpid():  # a forked child has another pid, so it reads its own
        _own = (pid, found)
    return found


def is_alive(pid: int | None, ctime: float | None = None) -> bool:
    """True if `pid` runs (not a zombie) and, when given, started at `ctime`."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return ctime is None or abs(proc.create_time() - ctime) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def find_process(*args: str) -> int | None:
    """The pid of a live process of this machine whose command line holds every one of `args`
    (a cluster's worker, found by its run folder), or None."""
    import psutil

    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and all(a in cmdline for a in args):
            return int(proc.pid)
    return None


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, grace_s: float, *, root_done: Callable[[], bool] | None = None) -> None:
    """SIGTERM `pid`'s process group and descendants, then SIGKILL whatever remains after `grace_s`.

    `root_done` tells whether the root has exited (for our own child, whose exit only its parent
    may reap); descendants that left the group with setsid are found through /proc.
    """
    import psutil

    procs = descendants(pid)
    _signal_group(pid, signal.SIGTERM)
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        procs = [p for p in procs if _running(p)] + [p for p in descendants(pid) if p not in procs]
        root_running = not root_done() if root_done else is_alive(pid)
        if not root_running and not procs:
            return
        time.sleep(0.05)
    procs = [p for p in procs if _running(p)] + descendants(pid)
    _signal_group(pid, signal.SIGKILL)
    for proc in procs:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs([p for p in procs if _running(p)], timeout=5)


def _running(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(proc, sig: int) -> None:
    import psutil

    try:
        proc.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
