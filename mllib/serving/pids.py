"""Every process of a deployment, by record: one file per process in the deployment's `pids/`
folder holding its pid and start time (so a pid the kernel reused is never taken for it), its
role and the server it belongs to. Whoever starts a process writes its record (the controller's
supervisor, the controller for its servers, a server for its HTTP processes), and a process
that may be started where mllib does not see it (LitServe's workers, an API server started
again) writes its own on start; `MLLIB_PIDS` in the environment says where. Stopping and
reconciling a deployment read these records instead of looking through every process on the
host.

On Linux a child can also ask to be killed when its parent dies (PR_SET_PDEATHSIG): the
controller does, so a killed supervisor never leaves a controller nobody restarts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

PIDS_DIR = "pids"
PIDS_VAR = "MLLIB_PIDS"  # the folder a deployment's processes record themselves in
SERVER_VAR = "MLLIB_REPLICA"  # "DEPLOYMENT/SERVER" for a server's processes
_PR_SET_PDEATHSIG = 1


def folder_of(deployment_dir: str | Path) -> Path:
    """Where the processes of the deployment in `deployment_dir` are recorded."""
    return Path(deployment_dir) / PIDS_DIR


def record(folder: Path, pid: int, *, role: str, server: str | None = None) -> None:
    """Record process `pid` (started a moment ago) as one of the deployment's."""
    import psutil

    try:
        ctime = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # gone already: nothing to stop later
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{pid}-{round(ctime * 100)}.json"
    tmp = folder / f".{name}.{os.getpid()}"
    data = {"pid": pid, "ctime": ctime, "role": role, "server": server}
    tmp.write_text(json.dumps(data))
    os.replace(tmp, folder / name)


def record_self(role: str) -> None:
    """Record this process where its environment says (nothing outside a deployment)."""
    where = os.environ.get(PIDS_VAR)
    if where:
        record(Path(where), os.getpid(), role=role, server=server_of_env())


def record_child(pid: int, role: str) -> None:
    """Record a child this process just started, as one of the same server's."""
    where = os.environ.get(PIDS_VAR)
    if where:
        record(Path(where), pid, role=role, server=server_of_env())


def server_of_env() -> str | None:
    value = os.environ.get(SERVER_VAR)
    return value.rsplit("/", 1)[-1] if value else None


def entries(folder: Path) -> list[dict[str, Any]]:
    """Every record in `folder`, dead processes' too."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append({**json.loads(path.read_text()), "path": str(path)})
        except (OSError, ValueError):
            continue  # being replaced, or damaged: the process is found by its group instead
    return found


def alive(folder: Path, *, server: str | None = None) -> list:
    """The recorded processes still running (psutil processes), those of `server` alone when
    given; a record whose pid now names another process is no match."""
    found = []
    for entry in entries(folder):
        if server is not None and entry.get("server") != server:
            continue
        proc = _process(entry)
        if proc is not None and proc.pid != os.getpid():
            found.append(proc)
    return found


def servers(folder: Path) -> set[str]:
    """The servers (replica ids) with a recorded process still running."""
    return {e["server"] for e in entries(folder) if e.get("server") and _process(e) is not None}


def _process(entry: dict[str, Any]) -> Any:
    """The running process a record names, or None (ended, a zombie, or its pid reused)."""
    import psutil

    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry["ctime"])) >= 0.05:
            return None
        return proc if proc.status() != psutil.STATUS_ZOMBIE else None
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return None


def prune(folder: Path) -> None:
    """Remove the records of processes that have ended."""
    for entry in entries(folder):
        if _process(entry) is None:
            Path(entry["path"]).unlink(missing_ok=True)


def die_with_parent(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux; 0 cancels).
    Survives exec, so it can be set between fork and exec (Popen's preexec_fn)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
