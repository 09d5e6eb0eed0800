"""A run's background supervisor: a process of its own (its own session), so the run outlives the
terminal that started it. `python -m mllib.runs supervise --project ROOT RUN_ID` is its entry."""

from __future__ import annotations

import subprocess
import sys

from mllib.protocol.folder import RunFolder
from mllib.registry.runs import update_run
from mllib.runtime.processes import create_time
from mllib.workspace import Workspace


class _Supervisor(subprocess.Popen[bytes]):
    """A background supervisor: meant to outlive the process that started it, so never reported
    as a subprocess left running (a ResourceWarning) when this process lets go of it."""

    def __del__(self) -> None:
        self.poll()  # reaped if it has already exited; else it goes on without us


# Supervisors this process started, reaped as they exit while it goes on (a notebook).
_started: list[_Supervisor] = []


def spawn_supervisor(ws: Workspace, run_id: str, *, module: str = "mllib.runs") -> int:
    """Start the run's supervisor in the background; returns its pid.

    `module` is run as `python -m MODULE supervise --project ROOT RUN_ID`: mllib.runs, or an
    agent's wrapper around it (mllib_agent.runner)."""
    folder = RunFolder(ws.run_dir(run_id))
    with open(folder.supervisor_log, "ab") as log:
        proc = _Supervisor(
            [sys.executable, "-m", module, "supervise", "--project", str(ws.project.root), run_id],
            cwd=ws.project.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _started[:] = [p for p in _started if p.poll() is None]
    _started.append(proc)
    update_run(ws.registry, run_id, supervisor_pid=proc.pid, supervisor_ctime=create_time(proc.pid))
    return proc.pid
