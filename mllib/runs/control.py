"""What can be done to a recorded run from anywhere: supervise, cancel, follow its log, and settle
runs whose supervisor died (terminal closed, process killed). Each goes to the run's backend
(mllib.runs.backend), chosen from its recorded runtime."""

from __future__ import annotations

from collections.abc import Callable

from mllib.registry.runs import RunRecord, active_runs, get_run
from mllib.runs.backend import Echo, OnInterrupt, backend_for
from mllib.runtime.processes import is_alive
from mllib.workspace import Workspace


def supervise(
    ws: Workspace,
    run_id: str,
    *,
    echo: Echo | None = None,
    cancel_grace_s: float | None = None,
    on_interrupt: OnInterrupt | None = None,
) -> RunRecord:
    """Run `run_id` to its end in this process and return its final record. Ctrl-C or SIGTERM
    cancels it (a remote run asks `on_interrupt` whether to "detach" or "cancel")."""
    run = get_run(ws.registry, run_id)
    return backend_for(run).supervise(
        ws, run, echo=echo, cancel_grace_s=cancel_grace_s, on_interrupt=on_interrupt
    )


def cancel(ws: Workspace, run_id: str, *, timeout_s: float = 30.0) -> RunRecord:
    """Stop a queued or running run and everything it started; returns its final record."""
    run = get_run(ws.registry, run_id)
    if run.finished:
        return run
    return backend_for(run).cancel(ws, run, timeout_s=timeout_s)


def follow_log(
    ws: Workspace,
    run_id: str,
    write: Callable[[bytes], None],
    *,
    follow: bool = False,
    poll_s: float = 0.2,
) -> str:
    """Write the run's log; with `follow`, keep writing new output until the run ends. Returns
    the final status."""
    run = get_run(ws.registry, run_id)
    return backend_for(run).logs(ws, run, write, follow=follow, poll_s=poll_s)


def reconcile(ws: Workspace) -> list[str]:
    """Settle active runs whose supervisor no longer exists (through their backend); returns the
    ids of those failed here. A local run is failed and its worker ended; a remote run goes on on
    its agent without us, so a new background follower picks it up instead."""
    settled = []
    for run in active_runs(ws.registry):
        if is_alive(run.supervisor_pid, run.supervisor_ctime):
            continue
        if backend_for(run).settle(ws, run):
            settled.append(run.id)
    return settled
