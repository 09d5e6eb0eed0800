"""The local side of a remote run: place it, stream its log, sync its records, retry, cancel.

It runs where a local run's supervisor runs (the CLI process while attached, a background
process after --detach or Ctrl-C → detach), holding `supervisor.lock` in the run folder so only
one process follows a run. It keeps no state of its own: the attempts table and the local log's
size say where it is, so any process can pick a run up again (`mllib runs logs --follow`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mllib.agents.config import get_agent
from mllib.agents.connection import AgentUnreachable
from mllib.agents.placement import FailedStart, NotPlaced, place
from mllib.agents.retry import (
    RetryPolicy,
    begin_attempt,
    current_attempt,
    end_attempt,
    pinned_agent,
)
from mllib.agents.rpc import AgentClient, open_agent
from mllib.agents.sync import pull_log, sync_agent
from mllib.errors import MllibError
from mllib.locks import holder, try_lock
from mllib.registry.runs import RunRecord, claim_run, finish_run, get_run, update_run
from mllib.runs.failure import SYSTEM_ERROR
from mllib.runs.spec import discard_secret_params
from mllib.runtime.processes import create_time, is_alive
from mllib.safetext import printable
from mllib.workspace import Workspace

POLL_S = 0.3
SYNC_EVERY_S = 1.0
WAIT_POLL_S = 3.0
RECONNECT_PAUSE_S = 1.0
LOCK_FILE = "supervisor.lock"

Echo = Callable[[bytes], None]
Notify = Callable[[str], None]
OnInterrupt = Callable[[], str]  # returns "detach" or "cancel"


def stderr_notify(message: str) -> None:
    print(f"mllib: {printable(message)}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def supervisor_lock(run_dir: Path) -> Iterator[bool]:
    """Hold the run's supervisor lock (True), or learn that another process holds it (False)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with try_lock(run_dir / LOCK_FILE) as held:
        yield held


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the process following this run, or None when none does."""
    path = run_dir / LOCK_FILE
    if not path.exists():
        return None
    with try_lock(path) as held:
        if held:
            return None
    return holder(path)


class RemoteRun:
    """Drives one remote run to its end; `run()` returns (record, detached)."""

    def __init__(
        self,
        ws: Workspace,
        run_id: str,
        *,
        echo: Echo | None,
        notify: Notify,
        on_interrupt: OnInterrupt | None,
        flag,
    ) -> None:
        self.ws = ws
        self.reg = ws.registry
        self.run_id = run_id
        self.echo = echo
        self.notify = notify
        self.on_interrupt = on_interrupt
        self.flag = flag
        self.policy = RetryPolicy.from_config(ws.project.config)
        self.agent: AgentClient | None = None
        self.lost_since: float | None = None
        self.last_sync = 0.0
        self.said_waiting = False
        self.said_retry: int | None = None

    def record(self) -> RunRecord:
        return get_run(self.reg, self.run_id)

    def run(self) -> tuple[RunRecord, bool]:
        import paramiko

        try:
            while True:
                record = self.record()
                if record.finished:
                    return discard_if_finished(self.ws, record), False
                if self.flag.requested.is_set():
                    choice = self.on_interrupt() if self.on_interrupt else "cancel"
                    self.flag.requested.clear()
                    if choice == "detach":
                        return self.record(), True
                    self.cancel_now()
                    continue
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
        finally:
            self._close()

    # -- attempts --------------------------------------------------------------------------------
    def _next_attempt(self, previous: dict | None) -> None:
        if previous is not None:
            if previous["status"] != "failed" or not self.policy.retries(
                previous["attempt"], previous["failure_class"]
            ):
                reason = previous["reason"]
                if previous["status"] == "failed" and previous["attempt"] > 1:
                    reason = (
                        f"{reason} (attempt {previous['attempt']} of {self.policy.max_attempts})"
                    )
                finish_run(
                    self.reg, self.run_id, previous["status"], previous["failure_class"], reason
                )
                return
            pause = self.policy.pause_after(previous["attempt"]) - _age_s(previous["ended_at"])
            if pause > 0:
                if self.said_retry != previous["attempt"]:
                    self.said_retry = previous["attempt"]
                    self.notify(
                        f"attempt {previous['attempt']} of run {self.run_id} on agent "
                        f"{previous['agent']} failed ({previous['reason']}); retrying in {pause:.0f} s"
                    )
                self._sleep(pause)
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
            self._sleep(WAIT_POLL_S)
            return
        self.said_waiting = False
        self._close()
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

    def _begin(self, number: int, agent: str, previous: dict | None) -> None:
        """Record attempt `number` on `agent` as begun (the run's log says why, after a failure)."""
        log_path = Path(self.record().log_path or self.ws.run_dir(self.run_id) / "output.log")
        if previous is not None:
            for table in ("metrics", "eval_metrics", "artifacts"):
                self.reg.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (self.run_id,))
            banner = (
                f"\n--- mllib: attempt {number} of {self.policy.max_attempts} on agent {agent} "
                f"(attempt {previous['attempt']} on {previous['agent']}: {previous['reason']}) ---\n"
            ).encode()
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                log.write(banner)
            self._echo(banner)
        begin_attempt(
            self.reg,
            self.run_id,
            number,
            agent,
            log_path.stat().st_size if log_path.exists() else 0,
        )
        update_run(self.reg, self.run_id, host=agent, attempt=number)

    def _failed_start(self, number: int, failed: FailedStart, previous: dict | None) -> None:
        """The agent took the run but could not start it: a failed attempt, retried like any
        system error (on another agent when there is one, after the backoff)."""
        reason = f"agent {failed.agent} could not start the run ({failed.reason})"
        with self.reg.transaction():
            self._begin(number, failed.agent, previous)
            end_attempt(self.reg, self.run_id, number, "failed", SYSTEM_ERROR, reason)
        self._close()

    def _follow(self, attempt: dict) -> None:
        agent = self._connect(attempt["agent"])
        if agent is None:
            self._give_up_if_lost_too_long(attempt)
            return
        pull_log(agent, self.ws, self.run_id, attempt, self._echo)
        if time.monotonic() - self.last_sync >= SYNC_EVERY_S:
            sync_agent(self.ws, agent)
            self.last_sync = time.monotonic()
        self._sleep(POLL_S)

    def _fail(self, attempt: dict | None, reason: str) -> None:
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
        self._close()
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
        self._close()
        if pause:
            self._sleep(RECONNECT_PAUSE_S)

    def _give_up_if_lost_too_long(self, attempt: dict) -> None:
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
    def _echo(self, chunk: bytes) -> None:
        if self.echo is not None:
            try:
                self.echo(chunk)
            except (OSError, ValueError):
                self.echo = None

    def _sleep(self, seconds: float) -> None:
        self.flag.requested.wait(max(0.0, seconds))

    def _close(self) -> None:
        if self.agent is not None:
            with contextlib.suppress(Exception):
                self.agent.close()
            self.agent = None


def _age_s(iso: str | None) -> float:
    if not iso:
        return 0.0
    from datetime import UTC, datetime

    then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (datetime.now(UTC) - then).total_seconds()


def supervise_remote(
    ws: Workspace,
    run: RunRecord,
    *,
    echo: Echo | None = None,
    notify: Notify = stderr_notify,
    on_interrupt: OnInterrupt | None = None,
) -> RunRecord:
    """Follow `run` on its agent until it ends; Ctrl-C asks `on_interrupt` (default: cancel)."""
    from mllib.runs.launch import spawn_supervisor
    from mllib.runs.supervisor import CancelFlag, cancel_on_signals

    run_dir = Path(run.run_dir or ws.run_dir(run.id))
    with supervisor_lock(run_dir) as held:
        if not held:
            return get_run(ws.registry, run.id)  # another process follows it
        flag = CancelFlag()
        with cancel_on_signals(flag):
            if not claim_run(ws.registry, run.id, os.getpid(), create_time(os.getpid())):
                return get_run(ws.registry, run.id)  # cancelled before this follower took over
            loop = RemoteRun(
                ws, run.id, echo=echo, notify=notify, on_interrupt=on_interrupt, flag=flag
            )
            record, detached = loop.run()
    if detached:
        spawn_supervisor(ws, run.id)
        notify(f"detached; run {run.id} goes on. Follow it: mllib runs logs {run.id} --follow")
        return get_run(ws.registry, run.id)
    return record


def discard_if_finished(ws: Workspace, run: RunRecord) -> RunRecord:
    """Once a remote run has finished, no attempt needs the secret params given on the command
    line any more: delete their local hand-over file. Returns `run`."""
    if run.finished:
        discard_secret_params(Path(run.run_dir or ws.run_dir(run.id)))
    return run


def adopt(ws: Workspace, run: RunRecord) -> bool:
    """Start a background follower for a remote run nobody follows; True if one was started."""
    from mllib.runs.launch import spawn_supervisor

    run_dir = Path(run.run_dir or ws.run_dir(run.id))
    if lock_holder(run_dir) is not None:
        return False
    spawn_supervisor(ws, run.id)
    return True


def cancel_remote(ws: Workspace, run: RunRecord, *, timeout_s: float = 60.0) -> RunRecord:
    """`mllib runs cancel` of a remote run: through its follower if one runs, else directly."""
    run_dir = Path(run.run_dir or ws.run_dir(run.id))
    holder = lock_holder(run_dir)
    if holder is not None and holder != os.getpid() and is_alive(holder):
        os.kill(holder, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if get_run(ws.registry, run.id).finished or lock_holder(run_dir) is None:
                break
            time.sleep(0.1)
    if not get_run(ws.registry, run.id).finished:
        import threading

        class _Flag:
            requested = threading.Event()

        with supervisor_lock(run_dir) as held:
            if held:
                RemoteRun(
                    ws, run.id, echo=None, notify=stderr_notify, on_interrupt=None, flag=_Flag()
                ).cancel_now()
    return get_run(ws.registry, run.id)
