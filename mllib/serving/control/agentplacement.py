"""Where a deployment's next replica on agents goes: each agent's capacity as it last reported
it (the agent program's `serve_capacity`: its CPUs, the replicas of every deployment it serves,
the runs it runs, its GPUs), asked every SURVEY_S over a connection kept open; and which
replicas of the deployment run there that its controller does not know (agentservers.py stops
them).

>>> survey = Survey("d1", {"h0": {...}, "h1": {...}})  # doctest: +SKIP
>>> survey.ask_all(known=lambda agent: {"a1"}), survey.choose(held=["h0"], lost=None)  # doctest: +SKIP
([], 'h1')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mllib.serving.controller")
SURVEY_S = 5.0  # how often every agent is asked for its capacity and the replicas it runs
CALL_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Capacity:
    """What an agent said it has free for a replica (its `serve_capacity` answer)."""

    cpus: int
    active_runs: int
    replicas: int  # of every deployment, served there now
    servers: tuple[str, ...]  # this deployment's replicas with a process there
    run_slots: int  # runs it takes at once (its GPUs, at least one)

    def free_cpus(self, ours: int) -> int:
        """CPUs left once its runs and replicas have theirs (`ours` of this deployment there
        counted even before the agent sees their processes)."""
        others = self.replicas - len(self.servers)
        return self.cpus - self.active_runs - others - max(ours, len(self.servers))


class Survey:
    """The agents of one deployment, as their latest answers describe them."""

    def __init__(self, deployment: str, agents: dict[str, dict[str, Any]]) -> None:
        self.deployment = deployment
        self.agents = agents  # name -> its AgentSpec's fields
        self.capacity: dict[str, Capacity | None] = {}  # None: it did not answer
        self.suspects: set[tuple[str, str]] = set()  # (agent, replica) unknown at the last ask
        self.clients: dict[str, Any] = {}  # a connection to each agent, kept between asks

    def ask_all(self, known: Callable[[str], set[str]]) -> list[tuple[str, str]]:
        """Ask every agent at once; the (agent, replica) of this deployment running there
        that `known(agent)` lacks in two asks in a row (one answer may predate a stop that
        was under way)."""
        found: dict[str, dict[str, Any] | None] = {}

        def ask(name: str) -> None:
            found[name] = self._ask(name, "serve_capacity")

        threads = [threading.Thread(target=ask, args=(name,)) for name in self.agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        strays: set[tuple[str, str]] = set()
        for name, answer in found.items():
            try:
                self.capacity[name] = self._capacity(name, answer) if answer else None
            except (KeyError, TypeError, ValueError):  # an answer of another shape: unknown
                self.capacity[name] = None
            mine = known(name)
            strays |= {(name, s) for s in (answer or {}).get("servers") or () if s not in mine}
        confirmed, self.suspects = strays & self.suspects, strays
        return sorted(confirmed)

    def choose(self, held: list[str], lost: str | None) -> str:
        """The agent with the most free CPUs (this deployment's replicas there, `held`, count
        against it), then the most free run slots, then the fewest of this deployment's; never
        the one that lost a replica (its host may be gone) unless it is the only one, nor one
        that did not answer while another did."""
        names = list(self.agents)

        def rank(name: str) -> tuple:
            capacity = self.capacity.get(name)
            ours = held.count(name)
            if capacity is None:
                return (name == lost, True, 0, 0, ours, names.index(name))
            free_slots = capacity.run_slots - capacity.active_runs
            return (name == lost, False, -capacity.free_cpus(ours), -free_slots, ours, names.index(name))  # fmt: skip

        return min(names, key=rank)

    def describe(self, name: str, ours: int) -> str:
        """`1 of 8 CPUs free, 0 run(s)`: agent `name` as it was before one more of `ours`."""
        capacity = self.capacity.get(name)
        if capacity is None:
            return "its capacity unknown"
        free = capacity.free_cpus(ours - 1)
        return f"{free} of {capacity.cpus} CPUs free, {capacity.active_runs} run(s)"

    def cpus(self) -> int:
        """The CPUs of every agent (one for an agent that did not answer)."""
        found = [self.capacity.get(name) for name in self.agents]
        return sum(capacity.cpus if capacity else 1 for capacity in found)

    def close(self) -> None:
        for client in list(self.clients.values()):
            client.close()
        self.clients.clear()

    def _ask(self, name: str, method: str) -> Any:
        """`method` of agent `name` for this deployment, on the connection kept open (each
        opens the agent program there); None when it does not answer, or its program is older
        than the request."""
        from mllib.agents.config import AgentSpec
        from mllib.agents.rpc import open_agent

        client = self.clients.pop(name, None)
        try:
            if client is None:
                client = open_agent(AgentSpec(**self.agents[name]), install_if_needed=False)
            answer = client.call(method, deployment=self.deployment, timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # unreachable, or it failed: asked again next time
            log.debug(f"agent {name}: {method} failed: {exc}")
            if client is not None:
                client.close()
            return None
        self.clients[name] = client
        return answer

    def _capacity(self, name: str, answer: dict[str, Any]) -> Capacity:
        from mllib.agents.config import AgentSpec, detected_gpus

        return Capacity(
            cpus=int(answer["cpus"]),
            active_runs=int(answer["active_runs"]),
            replicas=int(answer["replicas"]),
            servers=tuple(answer["servers"]),
            run_slots=AgentSpec(**self.agents[name]).slots(detected_gpus(answer)),
        )
