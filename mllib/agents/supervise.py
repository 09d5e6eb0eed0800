"""Following a remote run from here: place each attempt, stream its log, sync its records,
retry system errors elsewhere, cancel it on its agent.

This is the agents backend's execution (mllib.agents.backend): it runs where a local run's
supervisor runs (the CLI process while attached, a background process after --detach or
Ctrl-C → detach), holding `supervisor.lock` in the run folder so only one process follows a run.
It keeps no state of its own: the attempts table and the local log's size say where it is, so
any process can pick a run up again (`mllib runs logs --follow`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mllib.agents.config import get_agent
from mllib.agents.connection import AgentUnreachable
from mllib.agents.placement import FailedStart, NotPlaced, place
from mllib.agents.retry import begin_attempt, current_attempt, end_attempt, pinned_agent
from mllib.agents.rpc import AgentClient, open_agent
from mllib.agents.sync import pull_log, sync_agent
from mllib.errors import MllibError
from mllib.locks import holder, try_lock
from mllib.protocol.failure import SYSTEM_ERROR
from mllib.protocol.folder import RunFolder
from mllib.registry.runs import RunRecord, finish_run, get_run, update_run
from mllib.runs.backend import Supervision
from mllib.runs.retry import RetryPolicy
from mllib.safetext import printable

POLL_S = 0.3
SYNC_EVERY_S = 1.0
WAIT_POLL_S = 3.0
RECONNECT_PAUSE_S = 1.0


@contextlib.contextmanager
def supervisor_lock(folder: RunFolder) -> Iterator[bool]:
    """Hold the run's supervisor lock (True), or learn that another process holds it (False)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    with try_lock(folder.supervisor_lock) as held:
        yield held


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the process following the run in `run_dir`, or None when none does."""
    folder = RunFolder(run_dir)
    if not folder.supervisor_lock.exists():
        return None
    with try_lock(folder.supervisor_lock) as held:
        if held:
            return None
    return holder(folder.supervisor_lock)


class RemoteRun:
    """Drives one remote run through its attempts; each `step()` does one thing (place, follow,
    retry, wait) and says whether the run has ended."""

    def __init__(self, ctx: Supervision) -> None:
        self.ctx = ctx
        self.ws = ctx.ws
        self.reg = ctx.ws.registry
        self.run_id = ctx.run.id
        self.notify = ctx.notify
        self.policy = RetryPolicy.from_config(ctx.ws.project.config)
        self.agent: AgentClient | None = None
        self.lost_since: float | None = None
        self.last_sync = 0.0
        self.said_waiting = False
        self.said_retry: int | None = None

    def record(self) -> RunRecord:
        return get_run(self.reg, self.run_id)

    def step(self) -> bool:
        """One step towards the run's end; True once it has ended. A cancel asked for is left to
        the caller (nothing starts while one is pending)."""
        import paramiko

        if self.record().finished:
            return True
        if self.ctx.flag.requested.is_set():
            return False
        attempt = current_attempt(self.reg, self.run_id)
        try:
            if attempt is None or attempt["status"] != "running":
                self._next_attempt(attempt)
            else:
                self._follow(attempt)
        except AgentUnreachable as exc:
            self._lost(exc)
        except MllibError as exc:
            self._fail(attempt, exc.message)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._lost(exc)  # the connection broke mid-request
        return False

    # -- attempts --------------------------------------------------------------------------------
    def _next_attempt(self, previous: dict[str, Any] | None) -> None:
        if previous is not None:
            if previous["status"] != "failed" or not self.policy.retries(
                previous["attempt"], previous["failure_class"]
            ):
                reason = previous["reason"]
                if previous["status"] == "failed":
                    reason = self.policy.final_reason(reason, previous["attempt"])
                finish_run(
                    self.reg, self.run_id, previous["status"], previous["failure_class"], reason
                )
                return
            pause = self.policy.wait_s(previous["attempt"], previous["ended_at"])
            if pause > 0:
                if self.said_retry != previous["attempt"]:
                    self.said_retry = previous["attempt"]
                    self.notify(
                        f"attempt {previous['attempt']} of run {self.run_id} on agent "
                        f"{previous['agent']} failed ({previous['reason']}); retrying in {pause:.0f} s"
                    )
                self.ctx.sleep(pause)
                return
        number = previous["attempt"] + 1 if previous else 1
        avoid = {previous["agent"]} if previous else set()
        pinned = pinned_agent(self.reg, self.run_id)
        placed = place(self.ws, self.record(), number, pinned=pinned, avoid=avoid)
        if isinstance(placed, FailedStart):
            self._failed_start(number, placed, previous)
            return
        if isinstance(placed, NotPlaced):
            if not self.said_waiting:
                why = "; ".join(f"{k}: {v}" for k, v in placed.reasons.items())
                self.notify(
                    f"run {self.run_id} is waiting for a free agent slot ({why}); it starts as "
                    "soon as one frees up"
                )
                self.said_waiting = True
                update_run(self.reg, self.run_id, phase="waiting for an agent")
            self.ctx.sleep(WAIT_POLL_S)
            return
        self.said_waiting = False
        self.close()
        self.agent = placed.agent
        name, answer = placed.agent.spec.name, placed.answer
        with self.reg.transaction():
            self._begin(number, name, previous)
            update_run(
                self.reg,
                self.run_id,
                status="running",
                phase=None,
                runtime_note=f"agent {name}, {answer['runtime']} runtime there ({answer['note']})",
            )
        for note in answer.get("data_notes", []):
            self.notify(note)
        self.notify(f"run {self.run_id} started on agent {name} ({answer['runtime']} runtime)")

    def _begin(self, number: int, agent: str, previous: dict[str, Any] | None) -> None:
        """Record attempt `number` on `agent` as begun (the run's log says why, after a failure)."""
        log_path = self.ws.run_folder(self.record()).log_file
        if previous is not None:
            for table in ("metrics", "eval_metrics", "artifacts"):
                self.reg.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (self.run_id,))
            banner = (
                f"\n--- mllib: attempt {number} of {self.policy.max_attempts} on agent {agent} "
                f"(attempt {previous['attempt']} on {printable(previous['agent'])}: "
                f"{printable(previous['reason'])}) ---\n"
            ).encode()
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                log.write(banner)
            self.ctx.show(banner)
        begin_attempt(
            self.reg,
            self.run_id,
            number,
            agent,
            log_path.stat().st_size if log_path.exists() else 0,
        )
        update_run(self.reg, self.run_id, host=agent, attempt=number)

    def _failed_start(
        self, number: int, failed: FailedStart, previous: dict[str, Any] | None
    ) -> None:
        """The agent took the run but could not start it: a failed attempt, retried like any
        system error (on another agent when there is one, after the backoff)."""
        reason = f"agent {failed.agent} could not start the run ({failed.reason})"
        with self.reg.transaction():
            self._begin(number, failed.agent, previous)
            end_attempt(self.reg, self.run_id, number, "failed", SYSTEM_ERROR, reason)
        self.close()

    def _follow(self, attempt: dict[str, Any]) -> None:
        agent = self._connect(attempt["agent"])
        if agent is None:
            self._give_up_if_lost_too_long(attempt)
            return
        pull_log(agent, self.ws, self.run_id, attempt, self.ctx.show)
        if time.monotonic() - self.last_sync >= SYNC_EVERY_S:
            sync_agent(self.ws, agent)
            self.last_sync = time.monotonic()
        self.ctx.sleep(POLL_S)

    def _fail(self, attempt: dict[str, Any] | None, reason: str) -> None:
        """A failure of mllib's side (no agent usable, an agent error): the run ends as system_error."""
        if attempt is not None and attempt["status"] == "running":
            end_attempt(self.reg, self.run_id, attempt["attempt"], "failed", SYSTEM_ERROR, reason)
        finish_run(self.reg, self.run_id, "failed", SYSTEM_ERROR, reason, phase=None)

    # -- connection --------------------------------------------------------------------------------
    def _connect(self, name: str) -> AgentClient | None:
        if self.agent is not None and self.agent.spec.name == name:
            if self.agent.conn.alive:
                return self.agent
            self._lost(AgentUnreachable(f"the SSH connection to agent {name} dropped"), pause=False)
        self.close()
        try:
            self.agent = open_agent(get_agent(name, self.ws.project.config))
        except AgentUnreachable as exc:
            self._lost(exc)
            return None
        if self.lost_since is not None:
            self.notify(f"reconnected to agent {name}; following run {self.run_id} again")
            self.lost_since = None
        return self.agent

    def _lost(self, exc: Exception, *, pause: bool = True) -> None:
        if self.lost_since is None:
            self.lost_since = time.monotonic()
            self.notify(
                f"lost the connection to the agent ({exc}); the run goes on there, reconnecting…"
            )
        self.close()
        if pause:
            self.ctx.sleep(RECONNECT_PAUSE_S)

    def _give_up_if_lost_too_long(self, attempt: dict[str, Any]) -> None:
        if self.lost_since is None:
            return
        lost_for = time.monotonic() - self.lost_since
        if lost_for < self.policy.unreachable_after_s:
            return
        reason = f"agent {attempt['agent']} was unreachable for {lost_for:.0f} s"
        end_attempt(self.reg, self.run_id, attempt["attempt"], "failed", SYSTEM_ERROR, reason)
        self.lost_since = None
        if not self.policy.retries(attempt["attempt"], SYSTEM_ERROR):
            finish_run(self.reg, self.run_id, "failed", SYSTEM_ERROR, reason, phase=None)

    # -- cancelling ----------------------------------------------------------------------------------
    def cancel_now(self) -> None:
        """Cancel on the agent (ending the remote process tree), then record the final state."""
        attempt = current_attempt(self.reg, self.run_id)
        note = "cancelled"
        if attempt is not None and attempt["status"] == "running":
            grace = self.ws.project.config.runtime.cancel_grace_s
            try:
                agent = self._connect(attempt["agent"])
                if agent is None:
                    raise AgentUnreachable(f"agent {attempt['agent']} is unreachable")
                agent.call("cancel", run_id=self.run_id, timeout_s=grace + 20, timeout=grace + 60)
                sync_agent(self.ws, agent)
            except (MllibError, OSError, EOFError) as exc:
                note = f"cancelled here; the agent could not be told ({exc}): check it with `mllib agents check {attempt['agent']}`"
            end_attempt(self.reg, self.run_id, attempt["attempt"], "cancelled", None, note)
        finish_run(self.reg, self.run_id, "cancelled", None, note, phase=None)

    # -- helpers ------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.agent is not None:
            with contextlib.suppress(Exception):
                self.agent.close()
            self.agent = None
