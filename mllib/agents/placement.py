"""Where a remote run goes: an agent with a free slot (its GPU count), `--agent NAME` pins one.

Agents are asked for their active runs; the one with the most free slots is tried first (agents
that just failed this run last). The agent itself refuses a start when its slots are full (it
checks under a lock), so two launches racing for the last slot never both get it. A start the
agent takes but cannot carry out (its disk is full, its agent program is broken) is a
`FailedStart`: the caller records it as a failed attempt and retries elsewhere. So is an agent
that answers but cannot work (its program fails to install or to answer) when no other agent
could take the run; while one is merely busy or unreachable, the run waits instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from mllib.agents.config import AgentSpec, detected_gpus, get_agent, load_agents
from mllib.agents.connection import AgentUnreachable
from mllib.agents.hostkeys import HostKeyError
from mllib.agents.install import AgentInstallError
from mllib.agents.remote import start_on
from mllib.agents.rpc import AgentBroken, AgentClient, AgentError, open_agent
from mllib.errors import ConfigError, MllibError
from mllib.registry.runs import RunRecord
from mllib.workspace import Workspace


@dataclass
class Placed:
    agent: AgentClient
    answer: dict  # the agent's answer to start


@dataclass
class NotPlaced:
    reasons: dict[str, str]  # agent name -> why it did not take the run now


@dataclass
class FailedStart:
    agent: str
    reason: str  # what went wrong there, for the attempt's record


def candidates(ws: Workspace, pinned: str | None) -> list[AgentSpec]:
    config = ws.project.config
    if pinned:
        return [get_agent(pinned, config)]
    specs = load_agents(config)
    if not specs:
        raise ConfigError(  # the user's set-up to complete (exit 2), not a system failure
            "No agents are configured, so --remote has nowhere to run",
            hint="Add one with `mllib agents add NAME --host HOST`, or declare [[agents]] in "
            "mllib.toml; or drop --remote to run here.",
        )
    return specs


def place(
    ws: Workspace, run: RunRecord, attempt: int, *, pinned: str | None, avoid: set[str]
) -> Placed | NotPlaced | FailedStart:
    """Start attempt `attempt` of `run` on the best agent that takes it, say why none did, or
    which agent failed to start it and why."""
    reasons: dict[str, str] = {}
    probes: list[_Probe] = []
    host_key_errors = []
    broken: list[FailedStart] = []  # agents that answer but cannot work
    for spec in candidates(ws, pinned):
        try:
            client = open_agent(spec)
        except HostKeyError as exc:
            host_key_errors.append(exc)
            reasons[spec.name] = exc.message
            continue
        except (AgentInstallError, AgentBroken) as exc:
            broken.append(FailedStart(spec.name, exc.message))
            reasons[spec.name] = exc.message
            continue
        except MllibError as exc:  # unreachable now: it may come back
            reasons[spec.name] = exc.message
            continue
        try:
            info = client.call("info")
        except (AgentError, AgentBroken) as exc:
            client.close()
            why = _agent_error(exc) if isinstance(exc, AgentError) else exc.message
            broken.append(FailedStart(spec.name, why))
            reasons[spec.name] = exc.message
            continue
        except AgentUnreachable as exc:
            client.close()
            reasons[spec.name] = exc.message
            continue
        probes.append(_Probe(spec, client, info))
    if host_key_errors and not probes:
        raise host_key_errors[0]
    if broken and not probes:  # nothing to wait for: an attempt fails (and is retried)
        return broken[0]
    probes.sort(key=lambda p: (p.spec.name in avoid, -p.free))
    outcome: Placed | FailedStart | None = None
    for probe in probes:
        if outcome is None and probe.free <= 0:
            reasons[probe.spec.name] = f"all {probe.slots} slot(s) busy"
        elif outcome is None:
            outcome = _start(ws, run, attempt, probe, reasons)
        if not (isinstance(outcome, Placed) and outcome.agent is probe.client):
            probe.client.close()
    return outcome or NotPlaced(reasons)


@dataclass
class _Probe:
    """An agent that answered `info`, with its connection open."""

    spec: AgentSpec
    client: AgentClient
    info: dict

    @property
    def gpus(self) -> int:
        return self.spec.gpu_count(detected_gpus(self.info))

    @property
    def slots(self) -> int:
        return self.spec.slots(detected_gpus(self.info))

    @property
    def free(self) -> int:
        return self.slots - len(self.info["active_runs"])


def _start(
    ws: Workspace, run: RunRecord, attempt: int, probe: _Probe, reasons: dict[str, str]
) -> Placed | FailedStart | None:
    """Start on `probe`'s agent; None (with the reason noted) when it could not take the run now."""
    name = probe.spec.name
    try:
        answer = start_on(ws, run, probe.client, attempt, probe.slots, gpus=probe.gpus)
    except AgentError as exc:  # the agent answered, but could not start the run
        return FailedStart(name, _agent_error(exc))
    except AgentBroken as exc:  # its program died while starting the run
        return FailedStart(name, exc.message)
    except AgentUnreachable as exc:
        reasons[name] = exc.message
        return None
    except MllibError as exc:  # the run's inputs could not be sent
        return FailedStart(name, exc.message)
    if answer.get("busy"):
        reasons[name] = f"all {probe.slots} slot(s) busy"
        return None
    return Placed(probe.client, answer)


def _agent_error(exc: AgentError) -> str:
    return f"{exc.error.get('type')}: {exc.error.get('message')}"
