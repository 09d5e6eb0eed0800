"""A deployment's replicas on agent hosts (`mllib deploy MODEL --agents a1,a2`, or
`[serve] placement = "agents"`): started, health-checked, replaced and stopped by its controller.

An agent is a host reached over SSH (mllib.agents). A replica there is one server of the
stable version, started by the agent program's `serve` request: this machine sends the model's
code and saved model (the blobs the agent lacks) and the plan of the server's venv (the model's
dependencies and LitServe's, pinned to this machine's versions); the agent builds the venv once,
starts the server detached and records its processes (pid and start time) as this machine
records its own (mllib/serving/pids.py). The server answers on a link at the agent's address
(TCP, opened with the replica's token); the routes name it as a stable replica, and the gateway
on this machine (the stable server on the environment's port, which checks keys and limits)
sends requests to the least loaded one. The gateway keeps one process with the model: it
answers while no agent replica is ready (a lost one being replaced), so no request fails.

Health: a thread per replica asks its agent for the server's state every second. A replica
whose server ended, or whose host has not answered for LOST_AFTER_S, leaves the routes and is
started again on another agent of the deployment (on the same one when it is the only one, once
it answers again).
A stop asks every agent of the deployment to stop all of its processes and remove its folder.

>>> replicas = AgentReplicas(fleet_spec, free_slot=lambda: 1, event=print)  # doctest: +SKIP
>>> replicas.start_all(deadline)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.serving.control.fleet import FleetSpec
from mllib.serving.routes import Replica, process_address

log = logging.getLogger("mllib.serving.controller")
POLL_S = 1.0  # how often each replica's agent is asked how its server is
LOST_AFTER_S = 5.0  # an agent that has not answered this long has lost its replica
CALL_TIMEOUT_S = 3.0
START_TIMEOUT_S = 900.0  # the first start on an agent builds the server's venv
RETRY_S = 2.0  # between starts of a replacement that failed


class ReplicaFailed(Exception):
    """A replica could not be started on its agent."""


@dataclass
class AgentReplica:
    """One replica on an agent, as fleet.json records it."""

    id: str  # a1, a2, ...
    agent: str
    slot: int
    state: str = "starting"  # starting, live, lost
    server: dict[str, Any] = field(default_factory=dict)  # the agent's ServerState
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None

    @property
    def address(self) -> str:
        return process_address(self.server["link"], 0) if self.server.get("link") else ""

    def route(self) -> Replica:
        return Replica(
            self.id, self.slot, self.address, self.server.get("token", ""), host=self.agent
        )


class AgentReplicas:
    """The agent replicas of one deployment (its stable version)."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        free_slot: Callable[[], int],
        event: Callable[..., None],
    ) -> None:
        self.spec = spec
        self.free_slot = free_slot
        self.event = event
        self.agents = {a["name"]: a for a in spec.agents}
        self.replicas: dict[str, AgentReplica] = {}
        self.next_id = 1
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.changed = threading.Event()  # the routes need writing again
        self.retry_at: float | None = None

    # -- what the controller asks -----------------------------------------------------------
    def start_all(self, deadline: float) -> None:
        """One replica on each agent of the placement, all ready by `deadline` (monotonic);
        ReplicaFailed (with the agent's error) else. What an earlier controller of the
        deployment left there (it died, and its servers too) is stopped first."""
        stop_on_agents(self.spec.deployment, list(self.agents.values()), 1.0)
        threads = [self._launch(name) for name in self.agents]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for replica in list(self.replicas.values()):
            if replica.state != "live":
                why = replica.error or "not ready before [deploy] ready_timeout_s"
                raise ReplicaFailed(f"its replica on agent {replica.agent} did not start: {why}")

    def routes(self) -> list[Replica]:
        """The replicas that take requests."""
        with self.lock:
            return [r.route() for r in self.replicas.values() if r.state == "live"]

    def slots(self) -> set[int]:
        with self.lock:
            return {r.slot for r in self.replicas.values()}

    def tick(self, now: float) -> bool:
        """Replace what was lost (retrying after a failed start); True when the routes change."""
        for replica in list(self.replicas.values()):
            if replica.state == "lost":
                self._replace(replica)
        if self.retry_at is not None and now >= self.retry_at and not self.stopping.is_set():
            self.retry_at = None
            self._launch(self._choose_agent(None))
        changed = self.changed.is_set()
        self.changed.clear()
        return changed

    def to_state(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dataclasses.asdict(r) for r in self.replicas.values()]

    def adopt(self, items: list[dict[str, Any]], next_id: int) -> None:
        """Take over the replicas a dead controller left running (fleet.json)."""
        for item in items:
            replica = AgentReplica(**item)
            if replica.state == "live":
                self.replicas[replica.id] = replica
                self._watch(replica)
        self.next_id = next_id

    def stop_all(self, grace_s: float) -> None:
        """Every process of the deployment on every agent of it stopped, its folders removed."""
        self.stopping.set()
        stop_on_agents(self.spec.deployment, list(self.agents.values()), grace_s)
        with self.lock:
            self.replicas.clear()

    # -- starting, watching, replacing --------------------------------------------------------
    def _launch(self, agent: str) -> threading.Thread:
        slot = self.free_slot()  # it reads slots() (the lock) itself
        with self.lock:
            replica = AgentReplica(f"a{self.next_id}", agent, slot)
            self.next_id += 1
            self.replicas[replica.id] = replica
        thread = threading.Thread(target=self._start, args=(replica,), daemon=True)
        thread.start()
        return thread

    def _start(self, replica: AgentReplica) -> None:
        from mllib.agents.rpc import open_agent

        try:
            with open_agent(self._agent_spec(replica.agent)) as agent:
                replica.server = start_on_agent(agent, self.spec, replica.id)
                while not self.stopping.is_set():
                    outcome = agent.call(
                        "serve_status", deployment=self.spec.deployment, server=replica.id
                    )
                    if outcome["outcome"] == "ready":
                        break
                    if outcome["outcome"] in ("failed", "gone"):
                        raise ReplicaFailed(outcome["why"] or "its server exited")
                    time.sleep(0.2)
        except Exception as exc:
            replica.error = getattr(exc, "message", None) or str(exc)
            replica.state = "failed"
            log.error(
                f"replica {replica.id} on agent {replica.agent} failed to start: {replica.error}",
                extra={"event": "server_failed", "replica": replica.id},
            )
            with self.lock:
                self.replicas.pop(replica.id, None)
            if not self.stopping.is_set():
                self.retry_at = time.monotonic() + RETRY_S
            return
        replica.state, replica.ready_at = "live", time.time()
        log.info(
            f"replica {replica.id} on agent {replica.agent} is live at {replica.address}",
            extra={"event": "server_ready", "replica": replica.id},
        )
        self.changed.set()
        self._watch(replica)

    def _watch(self, replica: AgentReplica) -> None:
        threading.Thread(target=self._health, args=(replica,), daemon=True).start()

    def _health(self, replica: AgentReplica) -> None:
        """Ask the agent how the replica's server is, every POLL_S, until it is lost."""
        from mllib.agents.rpc import open_agent

        agent = None
        heard = time.monotonic()
        why = "its host stopped answering"
        while not self.stopping.wait(POLL_S) and replica.state == "live":
            try:
                if agent is None:
                    agent = open_agent(self._agent_spec(replica.agent), install_if_needed=False)
                answer = agent.call(
                    "serve_status",
                    deployment=self.spec.deployment,
                    server=replica.id,
                    timeout=CALL_TIMEOUT_S,
                )
            except Exception as exc:  # unreachable, or the connection broke
                why = f"its host stopped answering ({getattr(exc, 'message', exc)})"
                if agent is not None:
                    agent.close()
                    agent = None
                if time.monotonic() - heard < LOST_AFTER_S:
                    continue
            else:
                heard = time.monotonic()
                if answer["outcome"] in ("ready", "starting"):
                    continue
                why = answer["why"] or "its server exited"
            replica.state, replica.error = "lost", why
            self.changed.set()
        if agent is not None:
            agent.close()

    def _replace(self, lost: AgentReplica) -> None:
        with self.lock:
            self.replicas.pop(lost.id, None)
        agent = self._choose_agent(lost.agent)
        self._launch(agent)
        self.event(
            "replace", "ok",
            f"replica {lost.id} on agent {lost.agent}: {lost.error}; starting another on {agent}",
        )  # fmt: skip
        threading.Thread(
            target=stop_on_agents,
            args=(self.spec.deployment, [self.agents[lost.agent]], 1.0, lost.id),
            daemon=True,
        ).start()

    def _choose_agent(self, lost: str | None) -> str:
        """Another agent than the one that lost a replica (its host may be gone), the one with
        the fewest replicas; the same one when it is the only agent."""
        with self.lock:
            held = [r.agent for r in self.replicas.values()]
        names = list(self.agents)
        return min(names, key=lambda name: (name == lost, held.count(name), names.index(name)))

    def _agent_spec(self, name: str) -> Any:
        from mllib.agents.config import AgentSpec

        return AgentSpec(**self.agents[name])


def start_on_agent(agent: Any, spec: FleetSpec, server: str) -> dict[str, Any]:
    """Send the stable version's trees to `agent` (an AgentClient) and start a replica there;
    the agent's ServerState of it."""
    from mllib.agents.transfer import send_tree
    from mllib.store import LocalBlobStore

    servable = spec.stable.servable
    store = LocalBlobStore(Path(spec.store))
    request = {
        "deployment": spec.deployment,
        "server": server,
        "model_tree": servable.model_sha256,
        "code_tree": servable.code_hash,
        "spec": dataclasses.asdict(spec.stable),
        "env_plan": spec.env_plan,
        "listen": agent.spec.host,
    }
    for _attempt in range(2):  # the agent's cache may drop blobs between the send and the start
        send_tree(agent, store, servable.code_hash)
        send_tree(agent, store, servable.model_sha256)
        answer = agent.call("serve", timeout=START_TIMEOUT_S, **request)
        if answer.get("started"):
            return answer["state"]
    raise ReplicaFailed(f"the agent kept losing blobs it was sent ({answer['missing'][:3]})")


def stop_on_agents(
    deployment: str, agents: list[dict[str, Any]], grace_s: float, server: str | None = None
) -> dict[str, str]:
    """Stop `deployment`'s processes on each agent (those of replica `server` alone when
    given); per agent, what happened ("stopped N" or why not)."""
    from mllib.agents.config import AgentSpec
    from mllib.agents.rpc import open_agent

    outcome = {}

    def stop(data: dict[str, Any]) -> None:
        try:
            with open_agent(AgentSpec(**data), install_if_needed=False) as agent:
                done = agent.call(
                    "serve_stop",
                    deployment=deployment,
                    grace_s=grace_s,
                    server=server,
                    timeout=grace_s + 30,
                )
            outcome[data["name"]] = f"stopped {done['stopped']}"
        except Exception as exc:  # unreachable: nothing to do there now
            outcome[data["name"]] = getattr(exc, "message", None) or str(exc)
            log.warning(
                f"could not stop {server or deployment} on agent {data['name']}: "
                f"{outcome[data['name']]}",
                extra={"event": "stop_failed"},
            )

    threads = [threading.Thread(target=stop, args=(data,)) for data in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome
