"""The dispatcher: hands queued runs to the server's agents and follows them there, with the
agents machinery a laptop uses (mllib.agents: start_on, sync_agent, pull_log, attempts), but one
connection per agent for every run, from the server.

Its loop: expire leases (a running job whose agent stopped answering for `lease_s` has its
attempt failed as a system_error, and is requeued under the retry policy or failed), claim the
next job that fits a free slot (mllib.queue.scheduler: fair share, GPU placement) and start it,
and every `heartbeat_s` ask each agent with running jobs for their changes: merged into the
registry, logs appended, leases renewed, ended runs taken out of the queue, failed attempts
requeued. It waits on an event that submissions set (and, on PostgreSQL, NOTIFY from any
process), so an idle agent gets a new job at once, not at the next poll.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.agents.config import detected_gpus, load_agents
from mllib.agents.retry import begin_attempt, current_attempt, end_attempt
from mllib.errors import MllibError
from mllib.protocol.failure import SYSTEM_ERROR
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.queue import jobs as q
from mllib.queue.scheduler import Placement, pick
from mllib.registry import Registry
from mllib.registry.runs import finish_run, get_run, now, update_run
from mllib.runs.retry import RetryPolicy
from mllib.server.fleet import Contact, unreachable
from mllib.server.submit import job_secrets

if TYPE_CHECKING:
    from mllib.agents.rpc import AgentClient
    from mllib.server.context import ServerContext

IDLE_WAIT_S = 1.0
DOWN_S = 5.0  # an agent that did not answer gets no new job for this long
CHECK_EVERY_S = 2.0  # `check` asks an agent again only when its last contact is older than this
BUSY_WAIT_S = 1.0
AGENTS_TTL_S = 1.0  # the agents' configuration is read again at most this often  # `check` leaves alone an agent the dispatcher talks to longer (a run starting)


def cancel_queued(reg: Registry, runs_dir: Path, run_id: str) -> bool:
    """Cancel a run that is still queued; False when it is not (any more)."""
    with reg.transaction():
        job = q.get_job(reg, run_id)
        if job is None or job.state != q.QUEUED:
            return False
        q.done(reg, run_id)
        finish_run(reg, run_id, "cancelled", None, "cancelled while queued", phase=None)
    return True


class Dispatcher:
    """Runs in the server process, on threads of its own, over its own database connection."""

    def __init__(self, ctx: ServerContext) -> None:
        from mllib.server.context import open_database

        self.ctx = ctx
        self.reg = open_database(ctx.home, ctx.settings)
        self.ws = ctx.workspace(self.reg)
        self.policy = RetryPolicy.from_config(self.ws.project.config)
        self.clients: dict[str, AgentClient] = {}
        self.slots: dict[str, int] = {}  # agent -> runs it takes at once (its GPUs, at least 1)
        self.gpus: dict[str, int] = {}  # agent -> its GPUs (0: none)
        self.down: dict[str, float] = {}  # agent -> when to try it again (it did not answer)
        self.locks: dict[str, threading.Lock] = {}
        self.connecting: dict[str, threading.Lock] = {}  # agent -> held while (re)connecting
        self.contacts: dict[str, Contact] = {}  # agent -> what it last answered (GET /agents)
        self.stopping = threading.Event()
        self.last_follow = 0.0
        self.last_expire = 0.0
        self.threads: list[threading.Thread] = []
        self._agents: tuple[float, list[Any]] | None = None  # until when, the agents read

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.threads = [threading.Thread(target=self.run, name="dispatch", daemon=True)]
        if self.reg.is_postgres:
            self.threads.append(threading.Thread(target=self._listen, name="listen", daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.ctx.wake.set()
        for thread in self.threads:
            thread.join(timeout=10)
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self.reg.close()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.step()
            except Exception as exc:  # the loop outlives any one failure (the database restarting)
                self._log(f"dispatch step failed: {exc}")
                self._reconnect()
                busy = False
            if not busy:
                self.ctx.wake.wait(min(IDLE_WAIT_S, self.ctx.settings.heartbeat_s))
                self.ctx.wake.clear()

    def step(self) -> bool:
        """One turn: expire leases and follow running jobs when due, start one job if one fits.
        True when it started a job (there may be more to start at once). A burst of
        submissions wakes it at each commit: leases are read at most every heartbeat, not at
        each wake."""
        if time.monotonic() - self.last_expire >= self.ctx.settings.heartbeat_s:
            self.last_expire = time.monotonic()
            self._expire()
        free, placement = self.free(), None
        if any(left > 0 for left in free.values()):  # else no need to read quotas or queue
            placement = pick(
                self.reg, free, lease_s=self.ctx.settings.lease_s, max_running=self._quotas()
            )
        if placement is not None:
            self._start(placement)
        if time.monotonic() - self.last_follow >= self.ctx.settings.heartbeat_s:
            self.last_follow = time.monotonic()
            self._follow()
        return placement is not None

    def _listen(self) -> None:
        """PostgreSQL: wake the loop on every NOTIFY of the jobs channel (from any process)."""
        import psycopg

        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.ctx.database, autocommit=True) as conn:
                    conn.execute(f"LISTEN {q.CHANNEL}")
                    for _ in conn.notifies(timeout=1.0):
                        self.ctx.wake.set()
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.ctx.wake.set()
            except psycopg.Error:
                self.stopping.wait(0.5)

    def _reconnect(self) -> None:
        if getattr(self.reg.conn, "broken", False):
            from mllib.server.context import open_database

            with contextlib.suppress(Exception):
                self.reg.close()
            with contextlib.suppress(Exception):
                self.reg = open_database(self.ctx.home, self.ctx.settings)
                self.ws = self.ctx.workspace(self.reg)
        self.stopping.wait(0.2)

    # -- capacity ----------------------------------------------------------------------------------
    def agents(self) -> list[Any]:
        """The agents configured (read again at most every AGENTS_TTL_S: a burst of
        submissions wakes the loop for each commit, and an agent added shows up within it)."""
        read = self._agents
        if read is None or time.monotonic() >= read[0]:
            read = self._agents = (
                time.monotonic() + AGENTS_TTL_S,
                load_agents(self.ws.project.config),
            )
        return read[1]

    def capacity(self) -> int:
        return sum(self.slots.get(spec.name, spec.slots(None)) for spec in self.agents()) or 1

    def free(self) -> dict[str, int]:
        """Agent -> free GPU slots: its slots less those its running jobs hold."""
        specs = self.agents()
        if not specs:
            return {}
        used: dict[str, int] = {}
        for job in q.running(self.reg):
            if job.agent:
                used[job.agent] = used.get(job.agent, 0) + job.slots
        now_ = time.monotonic()
        return {
            spec.name: self.slots.get(spec.name, spec.slots(None)) - used.get(spec.name, 0)
            for spec in specs
            if self.down.get(spec.name, 0.0) <= now_  # one that stopped answering: later
        }

    def _quotas(self) -> dict[str, int | None]:
        rows = self.reg.query("SELECT name, max_running, disabled FROM users")
        default = self.ctx.settings.max_running
        return {
            r["name"]: 0
            if r["disabled"]
            else (r["max_running"] if r["max_running"] is not None else default)
            for r in rows
        }

    def _client(self, name: str) -> AgentClient | None:
        """An open connection to agent `name` (reconnecting when it dropped), or None."""
        with self.connecting.setdefault(name, threading.Lock()):  # one connection at a time
            return self._connect(name)

    def _connect(self, name: str) -> AgentClient | None:
        from mllib.agents.config import get_agent
        from mllib.agents.rpc import open_agent

        client = self.clients.get(name)
        if client is not None and client.conn.alive:
            return client
        self.clients.pop(name, None)
        try:
            client = open_agent(get_agent(name, self.ws.project.config))
            info = client.call("info")
        except (MllibError, OSError, EOFError) as exc:
            self._lost(name, f"agent {name} unreachable", exc)
            return None
        self._answered(name)
        spec = client.spec
        self.slots[name] = spec.slots(detected_gpus(info))
        self.gpus[name] = spec.gpu_count(detected_gpus(info))
        self.clients[name] = client
        self.locks.setdefault(name, threading.Lock())
        return client

    # -- starting ----------------------------------------------------------------------------------
    def _start(self, placement: Placement) -> None:
        from mllib.agents.remote import start_on
        from mllib.runtime.env_plan import EnvPlan

        job, agent = placement.job, placement.agent
        client = self._client(agent)
        if client is None:  # not an attempt: the job waits for an agent that answers
            q.requeue(self.reg, job.run_id, job.attempt, time.time())
            return
        run = get_run(self.reg, job.run_id)
        log = RunFolder(Path(run.run_dir or "")).log_file
        with self.reg.transaction():
            begin_attempt(
                self.reg, run.id, job.attempt, agent, log.stat().st_size if log.exists() else 0
            )
            update_run(self.reg, run.id, host=agent, attempt=job.attempt)
        folder = RunFolder(Path(run.run_dir or ""))
        env, secret_params = job_secrets(job)
        try:
            RunSpec(**json.loads(job.spec or "{}")).write(folder.path)
            if job.env_plan:  # for start_on to send: the agent builds what the client planned
                EnvPlan.from_json(json.loads(job.env_plan)).write(folder.env_plan_file)
            folder.write_secret_params(secret_params)  # for start_on to send; gone just after
            with self.locks[agent]:
                answer = start_on(
                    self.ws, get_run(self.reg, run.id), client, job.attempt,
                    self.slots.get(agent, 1) * 64, gpus=self.gpus.get(agent, 0), env=env,
                )  # fmt: skip
        except (MllibError, OSError, EOFError, TypeError, ValueError) as exc:
            self.clients.pop(agent, None)
            self._attempt_failed(run.id, job.attempt, f"agent {agent} could not start it: {exc}")
            return
        finally:
            folder.discard_secret_params()
        if answer.get("busy"):  # the agent runs more than the server knows of: try again later
            with self.reg.transaction():
                end_attempt(self.reg, run.id, job.attempt, "failed", SYSTEM_ERROR, "agent busy")
                q.requeue(self.reg, run.id, job.attempt, time.time() + 2)
            return
        update_run(  # started_at comes from the agent: when its worker started
            self.reg,
            run.id,
            status="running",
            phase=None,
            runtime_note="; ".join(  # with what its datasets needed sent (`runs show`)
                [
                    f"agent {agent}, {answer['runtime']} runtime there ({answer['note']})",
                    *answer.get("data_notes", []),
                ]
            ),
        )

    def _attempt_failed(self, run_id: str, attempt: int, reason: str) -> None:
        """The attempt ended as a system_error: requeue it (another agent, after the backoff)
        while the retry policy allows, else fail the run."""
        with self.reg.transaction():
            end_attempt(self.reg, run_id, attempt, "failed", SYSTEM_ERROR, reason)
            self._retry_or_fail(run_id, attempt, reason, SYSTEM_ERROR)

    def _retry_or_fail(self, run_id: str, attempt: int, reason: str, failure: str | None) -> None:
        if self.policy.retries(attempt, failure):
            pause = self.policy.wait_s(attempt, now())
            q.requeue(self.reg, run_id, attempt + 1, time.time() + pause)
            update_run(self.reg, run_id, status="queued", phase="retrying")
            return
        finish_run(
            self.reg,
            run_id,
            "failed",
            failure,
            self.policy.final_reason(reason, attempt),
            phase=None,
        )
        q.done(self.reg, run_id)

    # -- following -----------------------------------------------------------------------------------
    def _follow(self) -> None:
        """Ask each agent with running jobs what changed; renew the leases of those it answers for."""
        from mllib.agents.sync import pull_log, sync_agent

        by_agent: dict[str, list[q.Job]] = {}
        for job in q.running(self.reg):
            by_agent.setdefault(job.agent or "", []).append(job)
        for agent, jobs in by_agent.items():
            client = self._client(agent)
            if client is None:
                continue  # its leases are not renewed: they run out
            try:
                with self.locks[agent]:
                    report = sync_agent(self.ws, client)
                    for job in jobs:
                        attempt = current_attempt(self.reg, job.run_id)
                        if attempt is not None and attempt["status"] == "running":
                            pull_log(client, self.ws, job.run_id, attempt)
            except (MllibError, OSError, EOFError) as exc:
                self._lost(agent, f"agent {agent} did not answer", exc)
                continue
            self._answered(agent)
            q.renew(self.reg, [j.run_id for j in jobs], self.ctx.settings.lease_s)
            for run_id in report.finished:
                q.done(self.reg, run_id)
            for run_id in report.retrying:
                attempt = current_attempt(self.reg, run_id)
                with self.reg.transaction():
                    self._retry_or_fail(
                        run_id,
                        attempt["attempt"] if attempt else 1,
                        (attempt or {}).get("reason") or "failed",
                        SYSTEM_ERROR,
                    )

    def _expire(self) -> None:
        """Jobs whose lease ran out: their agent stopped answering."""
        for job in q.expired(self.reg):
            reason = (
                f"agent {job.agent} stopped answering (no heartbeat for "
                f"{self.ctx.settings.lease_s:g} s)"
            )
            self._lost(job.agent or "", f"run {job.run_id}", MllibError(reason))
            self._attempt_failed(job.run_id, job.attempt, reason)

    # -- reachability ----------------------------------------------------------------------------------
    def _answered(self, agent: str) -> None:
        self.down.pop(agent, None)
        self.contacts[agent] = Contact(True, time.time())

    def _lost(self, agent: str, what: str, exc: BaseException) -> None:
        """The agent did not answer: no new job for DOWN_S, and why, for GET /api/v1/agents."""
        from mllib.agents.config import get_agent

        self._log(f"{what}: {exc}")
        self.clients.pop(agent, None)
        self.down[agent] = time.monotonic() + DOWN_S
        try:
            self.contacts[agent] = unreachable(
                get_agent(agent, self.ws.project.config), exc, time.time()
            )
        except MllibError:  # an agent since removed
            self.contacts.pop(agent, None)

    def check(self) -> None:
        """Ask every agent whether it answers now (those asked in the last CHECK_EVERY_S are
        not asked again), side by side, so one that does not answer delays none of the others."""
        from concurrent.futures import ThreadPoolExecutor

        def ask(name: str) -> None:
            client = self._client(name)  # a new connection asks `info` itself
            lock = self.locks.get(name)
            if client is None or lock is None or self._recent(name):
                return
            if not lock.acquire(timeout=BUSY_WAIT_S):  # the dispatcher is talking to it now
                return
            try:
                client.call("info")
            except (MllibError, OSError, EOFError) as exc:
                self._lost(name, f"agent {name} did not answer", exc)
                return
            finally:
                lock.release()
            self._answered(name)

        names = [spec.name for spec in self.agents() if not self._recent(spec.name)]
        if names:
            with ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
                list(pool.map(ask, names))

    def _recent(self, agent: str) -> bool:
        contact = self.contacts.get(agent)
        return contact is not None and time.time() - contact.at < CHECK_EVERY_S

    # -- cancelling ----------------------------------------------------------------------------------
    def cancel(self, reg: Registry, run_id: str) -> None:
        """Cancel a queued run here, or a running one on its agent (then here)."""
        if cancel_queued(reg, self.ctx.home.runs_dir, run_id):
            return
        job = q.get_job(reg, run_id)
        if job is None or job.state != q.RUNNING:
            return
        note = "cancelled"
        client = self._client(job.agent or "")
        grace = self.ws.project.config.runtime.cancel_grace_s
        if client is None:
            note = f"cancelled here; agent {job.agent} could not be told (unreachable)"
        else:
            try:
                with self.locks[job.agent or ""]:
                    client.call("cancel", run_id=run_id, timeout_s=grace + 20, timeout=grace + 60)
            except (MllibError, OSError, EOFError) as exc:
                note = f"cancelled here; agent {job.agent} could not be told ({exc})"
        with reg.transaction():
            end_attempt(reg, run_id, job.attempt, "cancelled", None, note)
            finish_run(reg, run_id, "cancelled", None, note, phase=None)
            q.done(reg, run_id)

    def _log(self, line: str) -> None:
        import sys

        print(f"{now()} {line}", file=sys.stderr, flush=True)
