"""The agents backend of remote runs (see mllib.runs.backends): placed on agent hosts over SSH,
followed from here by mllib.agents.supervise."""

from __future__ import annotations

from collections.abc import Callable

from mllib.registry.runs import RunRecord, get_run
from mllib.workspace import Workspace


class AgentsBackend:
    """Runs recorded with the `ssh` runtime: an agent runs them; this machine follows them."""

    name = "agents"

    def supervise(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        echo: Callable[[bytes], None] | None,
        cancel_grace_s: float | None,
        on_interrupt: Callable[[], str] | None,
    ) -> RunRecord:
        """Place and follow the run; its grace period is the agent's ([runtime] cancel_grace_s)."""
        from mllib.agents.supervise import supervise_remote

        return supervise_remote(ws, run, echo=echo, on_interrupt=on_interrupt)

    def cancel(self, ws: Workspace, run: RunRecord, *, timeout_s: float) -> RunRecord:
        """Cancel through the run's follower, else directly; then no secret param outlives it."""
        from mllib.agents.supervise import cancel_remote, discard_if_finished

        return discard_if_finished(ws, cancel_remote(ws, run, timeout_s=timeout_s))

    def settle(self, ws: Workspace, run: RunRecord) -> bool:
        """The run goes on on its agent: a new background follower picks it up (never failed).
        One that has finished meanwhile needs none, only its secret params gone."""
        from mllib.agents.supervise import adopt, discard_if_finished

        if not discard_if_finished(ws, get_run(ws.registry, run.id)).finished:
            adopt(ws, run)
        return False
