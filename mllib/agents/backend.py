"""The agents backend: runs recorded with the `ssh` runtime execute on agent hosts over SSH.

An agent is a host reached over SSH where mllib's own supervisor runs the run with a local
runtime again (mllib.runs.local, there); this machine places each attempt on an agent with a
free slot, streams its log, syncs its records back, and retries system errors elsewhere
(mllib.agents.supervise). The run goes on on its agent without us, so Ctrl-C may detach, and a
follower that died is replaced rather than the run failed. It also answers where runs go:
whether one can be placed at all, pinning to one agent, and the attempts made.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from mllib.registry.runs import RunRecord
from mllib.runs.backend import Backend, Supervision
from mllib.runs.background import spawn_supervisor
from mllib.runtime.processes import is_alive
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.agents.supervise import RemoteRun
    from mllib.protocol.folder import RunFolder

ATTEMPT_KEYS = ("attempt", "agent", "status", "failure_class", "reason", "started_at", "ended_at")


class AgentsBackend(Backend["RemoteRun"]):
    """Runs placed on agent hosts, followed from here; the grace period of a cancel is the
    agent's own ([runtime] cancel_grace_s of its copy of the project)."""

    name = "agents"
    can_detach = True
    keeps_secret_params = True  # every attempt sends them again; they go once the run ends

    def check_placement(self, ws: Workspace, pin: str | None) -> None:
        """Refuse when no agent is configured, or `pin` names none."""
        from mllib.agents.placement import candidates

        candidates(ws, pin)

    def pin(self, ws: Workspace, run: RunRecord, where: str) -> None:
        from mllib.agents.retry import pin

        pin(ws.registry, run.id, where)

    def attempts(self, ws: Workspace, run: RunRecord) -> list[dict[str, Any]]:
        from mllib.agents.retry import attempts

        return [{k: a[k] for k in ATTEMPT_KEYS} for a in attempts(ws.registry, run.id)]

    def _start(self, ctx: Supervision) -> RemoteRun:
        from mllib.agents.supervise import RemoteRun

        return RemoteRun(ctx)  # placing the first attempt is its first step

    def _poll(self, ctx: Supervision, remote: RemoteRun) -> bool:
        return remote.step()

    def _stop(self, ctx: Supervision, remote: RemoteRun, grace_s: float) -> None:
        remote.cancel_now()

    def _finish(self, ctx: Supervision, remote: RemoteRun, cancelled: bool) -> RunRecord:
        return ctx.record()  # the sync, a failed attempt or the cancel recorded its end

    def _close(self, ctx: Supervision, remote: RemoteRun) -> None:
        remote.close()

    def _cancel_unsupervised(self, ws: Workspace, run: RunRecord) -> None:
        from mllib.agents.supervise import RemoteRun, supervisor_lock

        with supervisor_lock(ws.run_folder(run)) as held:
            if held:
                remote = RemoteRun(self._supervision(ws, run))
                try:
                    remote.cancel_now()
                finally:
                    remote.close()

    def _orphaned(self, ws: Workspace, run: RunRecord) -> bool:
        """The run goes on on its agent: a new background follower picks it up (never failed)."""
        spawn_supervisor(ws, run.id)
        return False

    def _supervisor(self, ws: Workspace, run: RunRecord) -> int | None:
        """The follower holding the run's lock, else one just started that has yet to take it."""
        from mllib.agents.supervise import lock_holder

        holder = lock_holder(ws.run_folder(run).path)
        if holder is not None and is_alive(holder):
            return holder
        return super()._supervisor(ws, run)

    def _exclusive(self, folder: RunFolder) -> contextlib.AbstractContextManager[bool]:
        from mllib.agents.supervise import supervisor_lock

        return supervisor_lock(folder)
