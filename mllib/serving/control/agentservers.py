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

Placement: a deployment starts with one replica on each of its agents (more, to min_replicas,
placed as below). The controller's autoscaler adds a replica on the agent with the most free
capacity, as each agent reports it (`serve_capacity`: its CPUs less the replicas of every
deployment served there and the runs it runs; then its free run slots, which its GPUs set),
replicas of this deployment already there counting against it; and takes one away by draining
it (out of the routes, its requests finished) and stopping it on its agent, where nothing of it
is left (its processes, its folder). Each placement and stop is in `mllib deploy history`.

Health: a thread per replica asks its agent for the server's state every second. A replica
whose server ended, or whose host has not answered for LOST_AFTER_S, leaves the routes and is
started again on another agent of the deployment (on the same one when it is the only one, once
it answers again). A survey thread asks every agent for its capacity every SURVEY_S, and with
it for the replicas of the deployment running there (by the agent's `pids/` records): one the
controller no longer knows (its host came back after it was replaced elsewhere, a start that
finished after it was given up) is stopped.
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

from mllib.serving.control.agentplacement import SURVEY_S, Survey
from mllib.serving.control.fleet import FleetSpec, server_spec_from
from mllib.serving.routes import STABLE, Replica, process_address
from mllib.serving.spec import ServerSpec

log = logging.getLogger("mllib.serving.controller")
POLL_S = 1.0  # how often each replica's agent is asked how its server is
LOST_AFTER_S = 5.0  # an agent that has not answered this long has lost its replica
CALL_TIMEOUT_S = 3.0
START_TIMEOUT_S = 900.0  # the first start on an agent builds the server's venv
RETRY_S = 2.0  # between starts of a replacement that failed
SERVING = ("starting", "live")  # the states of a replica that serves, or soon will
COUNTED = (*SERVING, "lost")  # and one lost, which the next tick starts again elsewhere


class ReplicaFailed(Exception):
    """A replica could not be started on its agent."""


@dataclass
class AgentReplica:
    """One replica on an agent, as fleet.json records it."""

    id: str  # a1, a2, ...
    agent: str
    slot: int
    state: str = "starting"  # starting, live, leaving (scaled down: draining), lost
    server: dict[str, Any] = field(default_factory=dict)  # the agent's ServerState
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    variant: str = STABLE  # or the candidate's (canary, shadow) during a rollout
    leaving_for: str | None = None  # why it drains: scale, rollback or promote

    @property
    def address(self) -> str:
        return process_address(self.server["link"], 0) if self.server.get("link") else ""

    @property
    def live(self) -> bool:
        return self.state == "live"

    @property
    def routed(self) -> bool:
        """In the routes: live, or draining what it was sent."""
        return self.state == "live" or (self.state == "leaving" and bool(self.address))

    def route(self) -> Replica:
        return Replica(
            self.id, self.slot, self.address, self.server.get("token", ""),
            draining=self.state == "leaving", host=self.agent,
        )  # fmt: skip


@dataclass(frozen=True)
class Template:
    """What a variant's replicas run: its server's spec and the plan of its venv."""

    spec: ServerSpec
    env_plan: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"spec": dataclasses.asdict(self.spec), "env_plan": self.env_plan}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Template:
        return cls(server_spec_from(data["spec"]), data.get("env_plan"))


class AgentReplicas:
    """The agent replicas of one deployment: its stable version's, and during a rollout its
    candidate's (placed alike, each replica of one variant)."""

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
        self.survey = Survey(spec.deployment, self.agents)  # their capacity (agentplacement.py)
        self.next_id = 1
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.changed = threading.Event()  # the routes need writing again
        self.templates = {STABLE: Template(spec.stable, spec.env_plan)}
        self.retry_at: float | None = None
        self.retries: dict[str, int] = {}  # per variant, starts that failed: again at retry_at

    # -- what the controller asks -----------------------------------------------------------
    def start_all(self, deadline: float) -> None:
        """One replica on each agent of the placement (and more, placed by capacity, up to
        min_replicas), all ready by `deadline` (monotonic); ReplicaFailed (with the agent's
        error) else. What an earlier controller of the deployment left there (it died, and
        its servers too) is stopped first."""
        stop_on_agents(self.spec.deployment, list(self.agents.values()), 1.0)
        self.reconcile()
        threads = [self._launch(name, STABLE) for name in self.agents]
        for _ in range(len(self.agents), self.spec.scaling.min_replicas):
            threads.append(self._launch(self._choose_agent(None), STABLE))
        self.watch_capacity()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for replica in list(self.replicas.values()):
            if replica.state != "live":
                why = replica.error or "not ready before [deploy] ready_timeout_s"
                raise ReplicaFailed(f"its replica on agent {replica.agent} did not start: {why}")

    def routes(self) -> list[tuple[str, Replica]]:
        """(variant, replica) of those that take requests, and of those draining."""
        with self.lock:
            return [(r.variant, r.route()) for r in self.replicas.values() if r.routed]

    def slots(self) -> set[int]:
        with self.lock:
            return {r.slot for r in self.replicas.values()}

    def count(self, variant: str = STABLE) -> int:
        """Replicas of `variant` that serve or soon will (starting, lost and about to be
        replaced, or to be started again): what the autoscaler weighs its decisions against."""
        with self.lock:
            counted = [r for r in self.replicas.values() if r.state in COUNTED]
            return sum(1 for r in counted if r.variant == variant) + self.retries.get(variant, 0)

    def ceiling(self) -> int:
        """The most replicas it may run: [serve] max_replicas, else one per CPU of its agents
        (as the latest survey found them; one per agent where unknown)."""
        scaling = self.spec.scaling
        if scaling.max_replicas:
            return max(scaling.min_replicas, scaling.max_replicas)
        cpus = self.survey.cpus()
        room = self.spec.slots // 2  # the counters' slots, half kept for a rollout's replicas
        return max(scaling.min_replicas, len(self.agents), min(cpus, room))

    def grow(self, variant: str = STABLE) -> str:
        """Start one more replica of `variant`, on the agent with the most free capacity; why
        it went there."""
        agent = self._choose_agent(None)
        replica_id = f"a{self.next_id}"
        self._launch(agent, variant)
        with self.lock:
            ours = sum(1 for r in self.replicas.values() if r.agent == agent and r.state in SERVING)
        return f"{replica_id} starts on agent {agent} ({self.survey.describe(agent, ours)})"

    def shrink(self, variant: str = STABLE) -> AgentReplica | None:
        """Take one replica of `variant` away: a start still to be retried, else the newest
        on the agent that holds the most (it drains: out of the routes, stopped by `retire`).
        None when it was a retry (nothing to drain)."""
        with self.lock:
            if self.retries.get(variant):
                self.retries[variant] -= 1
                return None
            serving = [
                r for r in self.replicas.values() if r.state in SERVING and r.variant == variant
            ]
            if not serving:
                return None
            held = [r.agent for r in serving]
            chosen = max(serving, key=lambda r: (held.count(r.agent), int(r.id[1:])))
            chosen.state, chosen.leaving_for = "leaving", "scale"
        self.changed.set()
        return chosen

    def add_variant(self, variant: str, spec: ServerSpec, env_plan: Any, count: int) -> list[str]:
        """Start `count` replicas of a candidate's `spec` (placed as any); where each went."""
        self.templates[variant] = Template(spec, env_plan)
        return [self.grow(variant) for _ in range(count)]

    def drop_variant(self, variant: str) -> list[AgentReplica]:
        """A candidate taken down: its replicas drain (`retire` stops each), none is started
        again; those now leaving."""
        with self.lock:
            self.templates.pop(variant, None)
            self.retries.pop(variant, None)
            leaving = [
                r for r in self.replicas.values() if r.variant == variant and r.state in SERVING
            ]
            for replica in leaving:
                replica.state, replica.leaving_for = "leaving", "rollback"
        self.changed.set()
        return leaving

    def promote_variant(self, variant: str) -> list[AgentReplica]:
        """A candidate promoted: its replicas are stable's from now on, and stable's drain;
        those now leaving."""
        with self.lock:
            old = [r for r in self.replicas.values() if r.variant == STABLE and r.state in SERVING]
            for replica in old:
                replica.state, replica.leaving_for = "leaving", "promote"
            for replica in self.replicas.values():
                if replica.variant == variant:
                    replica.variant = STABLE
            self.templates[STABLE] = self.templates.pop(variant, self.templates[STABLE])
            self.retries = {STABLE: self.retries.get(variant, 0)}
        self.changed.set()
        return old

    def rename_variant(self, variant: str, to: str) -> None:
        """A shadow promoted to a canary: its replicas and template go by the new name."""
        with self.lock:
            for replica in self.replicas.values():
                if replica.variant == variant:
                    replica.variant = to
            if variant in self.templates:
                self.templates[to] = self.templates.pop(variant)
            if variant in self.retries:
                self.retries[to] = self.retries.pop(variant)
        self.changed.set()

    def live(self, variant: str) -> int:
        """Replicas of `variant` that answer now."""
        with self.lock:
            return sum(1 for r in self.replicas.values() if r.variant == variant and r.live)

    def leaving_slot(self, replica_id: str) -> int | None:
        """The counters' slot of a replica being drained (None: not one of these)."""
        with self.lock:
            replica = self.replicas.get(replica_id)
            return replica.slot if replica is not None else None

    def retire(self, replica_id: str, grace_s: float) -> None:
        """Stop a drained replica on its agent (processes and folder), in the background."""
        with self.lock:
            replica = self.replicas.get(replica_id)
        if replica is None:
            return

        def stop() -> None:
            outcome = stop_on_agents(
                self.spec.deployment, [self.agents[replica.agent]], grace_s, replica.id
            )
            with self.lock:
                self.replicas.pop(replica.id, None)
            self.changed.set()
            self.event(
                replica.leaving_for or "scale", "stopped",
                f"replica {replica.id} ({replica.variant}) on agent {replica.agent} drained and "
                f"stopped ({outcome[replica.agent]})",
                agent=replica.agent, replica=replica.id,
            )  # fmt: skip

        threading.Thread(target=stop, daemon=True).start()

    def tick(self, now: float) -> bool:
        """Replace what was lost (retrying after a failed start); True when the routes change."""
        for replica in list(self.replicas.values()):
            if replica.state == "lost":
                self._replace(replica)
        if self.retry_at is not None and now >= self.retry_at and not self.stopping.is_set():
            self.retry_at = None
            with self.lock:
                retries, self.retries = self.retries, {}
            for variant, count in retries.items():
                for _ in range(count):
                    self._launch(self._choose_agent(None), variant)
        changed = self.changed.is_set()
        self.changed.clear()
        return changed

    def to_state(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dataclasses.asdict(r) for r in self.replicas.values()]

    def templates_state(self) -> dict[str, Any]:
        return {variant: template.to_dict() for variant, template in self.templates.items()}

    def adopt(
        self, items: list[dict[str, Any]], next_id: int, templates: dict[str, Any] | None = None
    ) -> None:
        """Take over the replicas a dead controller left running (fleet.json)."""
        for variant, data in (templates or {}).items():
            self.templates[variant] = Template.from_dict(data)
        for item in items:
            replica = AgentReplica(**item)
            if replica.state in ("live", "leaving"):
                self.replicas[replica.id] = replica
            if replica.state == "live":
                self._watch(replica)
            elif replica.state == "leaving":  # its drain was under way: it is stopped now
                self.retire(replica.id, self.spec.stop_grace_s)
        self.next_id = next_id
        self.watch_capacity()

    def stop_all(self, grace_s: float) -> None:
        """Every process of the deployment on every agent of it stopped, its folders removed."""
        self.stopping.set()
        stop_on_agents(self.spec.deployment, list(self.agents.values()), grace_s)
        with self.lock:
            self.replicas.clear()

    # -- capacity, and replicas nobody knows ------------------------------------------------
    def watch_capacity(self) -> None:
        """Survey the agents every SURVEY_S from now on, in the background."""

        def loop() -> None:
            while not self.stopping.wait(SURVEY_S):
                try:
                    self.reconcile()
                except Exception:  # the next turn tries again
                    log.exception("agent survey failed", extra={"event": "controller_error"})
            self.survey.close()

        threading.Thread(target=loop, daemon=True).start()

    def reconcile(self) -> None:
        """Ask every agent for its capacity, and stop the replicas of this deployment running
        there that this controller does not know (its host came back after it was replaced
        elsewhere, a start that ended after it was given up)."""

        def known(agent: str) -> set[str]:
            with self.lock:  # a replica whose start is under way is known from its launch
                return {r.id for r in self.replicas.values() if r.agent == agent}

        strays = self.survey.ask_all(known)
        for name, stray in strays if not self.stopping.is_set() else ():
            outcome = stop_on_agents(self.spec.deployment, [self.agents[name]], 1.0, stray)
            self.event(
                "reconcile", "ok",
                f"replica {stray} on agent {name} was still running, though it was replaced "
                f"or given up: stopped ({outcome[name]})",
                agent=name, replica=stray,
            )  # fmt: skip

    # -- starting, watching, replacing --------------------------------------------------------
    def _launch(self, agent: str, variant: str) -> threading.Thread:
        slot = self.free_slot()  # it reads slots() (the lock) itself
        with self.lock:
            replica = AgentReplica(f"a{self.next_id}", agent, slot, variant=variant)
            self.next_id += 1
            self.replicas[replica.id] = replica
        thread = threading.Thread(target=self._start, args=(replica,), daemon=True)
        thread.start()
        return thread

    def _start(self, replica: AgentReplica) -> None:
        from mllib.agents.rpc import open_agent

        try:
            with open_agent(self._agent_spec(replica.agent)) as agent:
                template = self.templates[replica.variant]  # KeyError: taken down meanwhile
                replica.server = start_on_agent(agent, self.spec, replica.id, template)
                while not self.stopping.is_set() and replica.state == "starting":
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
            log.error(
                f"replica {replica.id} on agent {replica.agent} failed to start: {replica.error}",
                extra={"event": "server_failed", "replica": replica.id},
            )
            with self.lock:
                self.replicas.pop(replica.id, None)
                wanted = replica.variant in self.templates and not self.stopping.is_set()
                if replica.state == "starting" and wanted:
                    self.retries[replica.variant] = self.retries.get(replica.variant, 0) + 1
                    self.retry_at = time.monotonic() + RETRY_S
                replica.state = "failed"
            return
        with self.lock:
            if replica.state != "starting":  # scaled down while it started: retire stops it
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
            with self.lock:  # one scaled down meanwhile is stopped on purpose, not lost
                if replica.state == "live":
                    replica.state, replica.error = "lost", why
            self.changed.set()
        if agent is not None:
            agent.close()

    def _replace(self, lost: AgentReplica) -> None:
        with self.lock:
            self.replicas.pop(lost.id, None)
        agent = self._choose_agent(lost.agent)
        if lost.variant in self.templates:  # not a candidate taken down meanwhile
            self._launch(agent, lost.variant)
            self.event(
                "replace", "ok",
                f"replica {lost.id} on agent {lost.agent}: {lost.error}; starting another on "
                f"{agent}",
            )  # fmt: skip
        threading.Thread(
            target=stop_on_agents,
            args=(self.spec.deployment, [self.agents[lost.agent]], 1.0, lost.id),
            daemon=True,
        ).start()

    def _choose_agent(self, lost: str | None) -> str:
        """Where a replica goes: by free capacity (agentplacement.Survey.choose), avoiding
        `lost`, the agent that just lost one."""
        with self.lock:
            held = [r.agent for r in self.replicas.values() if r.state in SERVING]
        return self.survey.choose(held, lost)

    def _agent_spec(self, name: str) -> Any:
        from mllib.agents.config import AgentSpec

        return AgentSpec(**self.agents[name])


def start_on_agent(agent: Any, spec: FleetSpec, server: str, template: Template) -> dict[str, Any]:
    """Send the trees of the version `template` serves to `agent` (an AgentClient) and start a
    replica of it there; the agent's ServerState of it."""
    from mllib.agents.transfer import send_tree
    from mllib.store import LocalBlobStore

    servable = template.spec.servable
    store = LocalBlobStore(Path(spec.store))
    request = {
        "deployment": spec.deployment,
        "server": server,
        "model_tree": servable.model_sha256,
        "code_tree": servable.code_hash,
        "spec": dataclasses.asdict(template.spec),
        "env_plan": template.env_plan,
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
