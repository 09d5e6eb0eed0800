"""Where a remote run goes: an agent with a free slot (its GPU count), `--agent NAME` pins one.

Agents are asked for their active runs; the one with the most free slots is tried first (agents
that just failed this run last). The agent itself refuses a start when its slots are full (it
checks under a lock), so two launches racing for the last slot never both get it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mllib.agents.config import AgentSpec, get_agent, load_agents
from mllib.agents.connection import AgentUnreachable
from mllib.agents.hostkeys import HostKeyError
from mllib.agents.remote import start_on
from mllib.agents.rpc import AgentClient, open_agent
from mllib.errors import MllibError, RuntimeUnavailableError
from mllib.registry.runs import RunRecord
from mllib.workspace import Workspace


@dataclass
class Placed:
    agent: AgentClient
    answer: dict  # the agent's answer to start


@dataclass
class NotPlaced:
    reasons: dict[str, str]  # agent name -> why it did not take the run now


def candidates(ws: Workspace, pinned: str | None) -> list[AgentSpec]:
    config = ws.project.config
    if pinned:
        return [get_agent(pinned, config)]
    specs = load_agents(config)
    if not specs:
        raise RuntimeUnavailableError(
            "No agents are configured, so --remote has nowhere to run",
            hint="Add one with `mllib agents add NAME --host HOST`, or declare [[agents]] in mllib.toml.",
        )
    return specs


def place(
    ws: Workspace, run: RunRecord, attempt: int, *, pinned: str | None, avoid: set[str]
) -> Placed | NotPlaced:
    """Start attempt `attempt` of `run` on the best agent that takes it, or say why none did."""
    reasons: dict[str, str] = {}
    probes: list[tuple[int, AgentSpec, AgentClient, int]] = []
    host_key_errors = []
    for spec in candidates(ws, pinned):
        try:
            client = open_agent(spec)
        except HostKeyError as exc:
            host_key_errors.append(exc)
            reasons[spec.name] = exc.message
            continue
        except MllibError as exc:  # unreachable, or the agent could not be installed/updated
            reasons[spec.name] = exc.message
            continue
        try:
            info = client.call("info")
        except AgentUnreachable as exc:
            client.close()
            reasons[spec.name] = exc.message
            continue
        detected = len(info["gpus"]) if info["gpus"] is not None else None
        slots = spec.slots(detected)
        probes.append((slots - len(info["active_runs"]), spec, client, slots))
    if host_key_errors and not probes:
        raise host_key_errors[0]
    probes.sort(key=lambda p: (p[1].name in avoid, -p[0]))
    placed = None
    for free, spec, client, slots in probes:
        if placed is not None or free <= 0:
            if placed is None:
                reasons[spec.name] = f"all {slots} slot(s) busy"
            client.close()
            continue
        try:
            answer = start_on(ws, run, client, attempt, slots)
        except AgentUnreachable as exc:
            reasons[spec.name] = exc.message
            client.close()
            continue
        if answer.get("busy"):
            reasons[spec.name] = f"all {slots} slot(s) busy"
            client.close()
            continue
        placed = Placed(client, answer)
    return placed or NotPlaced(reasons)
