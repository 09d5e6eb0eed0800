"""A backend whose runs execute nowhere: what a test of a backend's shared steps drives.

It ships with mllib as httpx ships MockTransport: a whole backend in a few lines, whose runs end
however `handler` says, so tests (and authors of a new backend) can see what the shared steps of
mllib.runs.backend do around it (claiming, signals, cancelling, secret params, the final
record) against a real registry, without a worker, a container or an agent.

>>> backend = FakeBackend(lambda execution: Outcome("succeeded") if execution.polls > 2 else None)
>>> backend.supervise(ws, run).status  # doctest: +SKIP
'succeeded'
>>> backend.calls  # doctest: +SKIP
['start', 'poll', 'poll', 'poll', 'finish', 'close']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mllib.protocol.failure import SYSTEM_ERROR, Outcome
from mllib.registry.runs import RunRecord, finish_run
from mllib.runs.backend import Backend, StartFailed, Supervision
from mllib.workspace import Workspace

POLL_S = 0.01


@dataclass
class FakeExecution:
    """One fake execution of a run: what happened to it so far."""

    run_id: str
    polls: int = 0
    stops: list[float] = field(default_factory=list)  # the grace period of each stop asked for
    outcome: Outcome | None = None
    model: str | None = None  # a stored tree to register as the run's model when it succeeds


Handler = Callable[[FakeExecution], Outcome | None]  # None: the run goes on
CANCELLED = Outcome("cancelled", None, "cancelled")


def succeed(execution: FakeExecution) -> Outcome | None:
    """The default handler: the run succeeds at its first poll (is cancelled, once stopped)."""
    return CANCELLED if execution.stops else Outcome("succeeded")


def run_forever(execution: FakeExecution) -> Outcome | None:
    """A run that goes on until it is stopped."""
    return CANCELLED if execution.stops else None


class FakeBackend(Backend[FakeExecution]):
    """Each poll asks `handler` what the run does now: an Outcome (it has ended) or None (it goes
    on); the stops asked for so far are in `execution.stops` for it to act on. `start_fails`
    makes `_start` fail with that outcome. `calls` lists the private methods called, in order."""

    name = "fake"
    ORPHANED = "its supervisor died (fake backend)"

    def __init__(
        self,
        handler: Handler = succeed,
        *,
        start_fails: Outcome | None = None,
        can_detach: bool = False,
        keeps_secret_params: bool = False,
    ) -> None:
        self.handler = handler
        self.start_fails = start_fails
        self.can_detach = can_detach
        self.keeps_secret_params = keeps_secret_params
        self.calls: list[str] = []
        self.executions: list[FakeExecution] = []

    def _start(self, ctx: Supervision) -> FakeExecution:
        self.calls.append("start")
        if self.start_fails is not None:
            raise StartFailed(self.start_fails)
        self._started(ctx)
        execution = FakeExecution(ctx.run.id)
        self.executions.append(execution)
        return execution

    def _poll(self, ctx: Supervision, execution: FakeExecution) -> bool:
        self.calls.append("poll")
        execution.polls += 1
        execution.outcome = self.handler(execution)
        if execution.outcome is None:
            ctx.sleep(POLL_S)
        return execution.outcome is not None

    def _stop(self, ctx: Supervision, execution: FakeExecution, grace_s: float) -> None:
        self.calls.append("stop")
        execution.stops.append(grace_s)

    def _finish(self, ctx: Supervision, execution: FakeExecution, cancelled: bool) -> RunRecord:
        self.calls.append("finish")
        outcome = CANCELLED if cancelled else execution.outcome
        assert outcome is not None  # _poll said it ended
        return self._record(ctx, outcome, model=execution.model)

    def _close(self, ctx: Supervision, execution: FakeExecution) -> None:
        self.calls.append("close")

    def _cancel_unsupervised(self, ws: Workspace, run: RunRecord) -> None:
        self.calls.append("cancel_unsupervised")
        finish_run(ws.registry, run.id, "cancelled", None, "cancelled")

    def _orphaned(self, ws: Workspace, run: RunRecord) -> bool:
        self.calls.append("orphaned")
        return finish_run(ws.registry, run.id, "failed", SYSTEM_ERROR, self.ORPHANED)
