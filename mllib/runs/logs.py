"""Reading a run's output log, once or following it until the run ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from mllib.registry.runs import get_run
from mllib.workspace import Workspace


def follow_log(
    ws: Workspace,
    run_id: str,
    write: Callable[[bytes], None],
    *,
    follow: bool = False,
    poll_s: float = 0.2,
) -> str:
    """Write the run's log; with `follow`, keep writing new output until the run ends. Returns the final status."""
    run = get_run(ws.registry, run_id)
    path = Path(run.log_path or ws.run_dir(run.id) / "output.log")
    offset = 0
    while True:
        run = get_run(ws.registry, run.id)  # read status before the file, so no output is missed
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                while chunk := handle.read(1 << 16):
                    write(chunk)
                    offset += len(chunk)
        if not follow or run.finished:
            return run.status
        if not _supervised(ws, run.id):
            from mllib.runs.control import reconcile

            reconcile(ws)
        time.sleep(poll_s)


def _supervised(ws: Workspace, run_id: str) -> bool:
    from mllib.runtime.processes import is_alive

    run = get_run(ws.registry, run_id)
    return run.finished or is_alive(run.supervisor_pid, run.supervisor_ctime)
