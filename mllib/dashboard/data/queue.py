"""The queue and agents pane's data: queued and running work by user and priority, and the agents
with their GPU slots, from the team server when one is configured, else this project's registry
(`queue_source`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from mllib.dashboard.data.runs import where
from mllib.dashboard.data.server import ServerLink
from mllib.registry.runs import active_runs
from mllib.workspace import Workspace


@dataclass
class QueueItem:
    """Queued or running work, by user and priority."""

    run_id: str
    user: str
    priority: int | None  # None: local runs have no priority (a team server's runs have one)
    model: str
    status: str
    created_at: str | None  # when it was queued
    where: str


@dataclass
class AgentRow:
    """An agent with its GPU slots, what occupies them, and whether it answered."""

    name: str
    address: str
    source: str
    gpus: int | None = None
    slots: int | None = None
    busy: list[str] = field(default_factory=list)  # the runs it runs (as recorded here)
    used: int | None = None  # slots its runs hold (None: one each, as `busy` counts)
    reachable: bool | None = None  # None: not checked yet
    problem: str | None = None
    checked_at: float | None = None


class QueueSource(Protocol):
    """Where the queue and the agents come from: the team server when one is configured, else this
    project's registry (see `queue_source`)."""

    name: str
    agents_title: str  # the agents table's heading, with what `k` does
    no_agents: str  # what the table says when there are none

    def queue(self) -> list[QueueItem]: ...

    def agents(self) -> list[AgentRow]: ...

    def check_agents(self) -> list[AgentRow]: ...

    def close(self) -> None: ...


class LocalQueue:
    """The local registry's queued and running runs, and the agents this project knows."""

    name = "local runs"
    agents_title = "Agents (k: check reachability and GPUs over SSH)"
    no_agents = "no agents: mllib agents add NAME --host HOST"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.checked: dict[str, AgentRow] = {}

    def queue(self) -> list[QueueItem]:
        return [
            QueueItem(
                r.id, r.user or "-", None, r.model, r.status, r.created_at, where(r.runtime, r.host)
            )
            for r in active_runs(self.ws.registry)
        ]

    def agents(self) -> list[AgentRow]:
        """Agents as configured, with what runs here say occupies them, and the last check."""
        from mllib.agents.api import list_agents

        busy = self._busy()
        rows = []
        for a in list_agents(self.ws.project.config):
            row = self.checked.get(a["name"]) or AgentRow(
                a["name"],
                f"{a['user'] + '@' if a.get('user') else ''}{a['host']}:{a['port']}",
                a["source"],
                gpus=a.get("gpus"),
            )
            row.busy = busy.get(a["name"], [])
            rows.append(row)
        return rows

    def check_agents(self) -> list[AgentRow]:
        """Reach every agent over SSH (slow: call it off the UI thread)."""
        from mllib.agents.api import check_agent

        for row in self.agents():
            report = check_agent(row.name, self.ws.project.config)
            row.reachable = report["reachable"]
            row.problem = report.get("error")
            if report["reachable"]:
                row.gpus, row.slots = report["gpus"], report["slots"]
            row.checked_at = time.time()
            self.checked[row.name] = row
        return self.agents()

    def close(self) -> None:
        pass

    def _busy(self) -> dict[str, list[str]]:
        from mllib.agents.retry import current_attempt
        from mllib.plugins import REMOTE_RUNTIME

        busy: dict[str, list[str]] = {}
        for run in active_runs(self.ws.registry):
            if run.runtime != REMOTE_RUNTIME:
                continue
            attempt = current_attempt(self.ws.registry, run.id)
            agent = attempt["agent"] if attempt else run.host
            if agent:
                busy.setdefault(agent, []).append(run.id)
        return busy


class ServerQueue:
    """The team server's queue and agents, read as `mllib queue --json` and `mllib agents list
    --json` read them (`mllib.client.views`): your running and queued work with its model,
    priority, GPUs, agent, place and when it was queued; the server's agents with their slots,
    the runs holding them, and whether they answered the server. Both are read together, off
    the UI thread (`queue`); `agents` gives the last read."""

    remote = True  # read off the UI thread: a server may be slow, or restarting (retried 60 s)
    agents_title = "Agents of the team server (k: have it ask each one now)"
    no_agents = "no agents on the server: an admin adds them with mllib server agents add"

    def __init__(self, server: ServerLink) -> None:
        self.server = server
        self.name = f"team server {server.url}"
        self._agents: list[AgentRow] = []

    def queue(self) -> list[QueueItem]:
        from mllib.client.views import queue as read_queue

        data = read_queue(self.server())
        self._read_agents(check=False)
        items = []
        for row in [*data["running"], *data["queued"]]:
            where = row.get("agent") or (f"#{row['position']}" if row.get("position") else "-")
            items.append(
                QueueItem(
                    row["run_id"],
                    row.get("user") or "-",
                    row.get("priority"),
                    row["model"],
                    row.get("state") or "-",
                    row["queued_at"],
                    f"{where} ({_gpus(row['gpus'])})" if row.get("gpus") else where,
                )
            )
        return items

    def agents(self) -> list[AgentRow]:
        """The agents as the server last described them (empty before the first read)."""
        return self._agents

    def check_agents(self) -> list[AgentRow]:
        """Have the server ask each agent now (slow: call it off the UI thread)."""
        return self._read_agents(check=True)

    def _read_agents(self, *, check: bool) -> list[AgentRow]:
        from datetime import datetime

        from mllib.client.views import agents, occupants

        rows = []
        for a in agents(self.server(), check=check):
            checked = a["checked_at"]
            rows.append(
                AgentRow(
                    a["name"], a["address"], self.name, gpus=a["gpus"], slots=a["slots"],
                    busy=occupants(a), used=a["used"], reachable=a["reachable"],
                    problem=a["problem"],
                    checked_at=datetime.fromisoformat(checked.replace("Z", "+00:00")).timestamp()
                    if checked else None,
                )
            )  # fmt: skip
        self._agents = rows
        return rows

    def close(self) -> None:
        self.server.close()


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("s" if n != 1 else "")


def queue_source(ws: Workspace, server: ServerLink | None) -> QueueSource:
    """The team server's queue when one is configured, else the local registry's."""
    return ServerQueue(server) if server else LocalQueue(ws)
