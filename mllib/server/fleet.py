"""The server's agents as `GET /api/v1/agents` shows them to any logged-in user: each one's GPUs
and slots, the running runs that hold them, and whether it answered the dispatcher when it last
tried. No secrets: no key and no key's path (scrubbed from the reasons an agent did not answer
too), and another user's runs by their user alone (run ids are yours, or everyone's for admins,
as in `mllib queue`).

>>> agents(reg, load_agents(config), who, contacts={"h0": Contact(True, time.time())})  # doctest: +SKIP
[{'name': 'h0', 'address': 'ml@10.0.0.5:22', 'gpus': 1, 'slots': 1, 'used': 0, 'running': [],
  'reachable': True, 'problem': None, 'checked_at': '2026-12-07T11:52:03.120044Z'}]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllib.queue import jobs as q
from mllib.registry import Registry
from mllib.registry.runs import iso

if TYPE_CHECKING:
    from mllib.agents.config import AgentSpec
    from mllib.server.accounts import User


@dataclass(frozen=True)
class Contact:
    """What the dispatcher last heard from an agent (at `at`, epoch seconds): an answer, or why
    none came."""

    reachable: bool
    at: float
    problem: str | None = None


def unreachable(spec: AgentSpec, exc: BaseException, at: float) -> Contact:
    """A failed contact whose reason is one line with the agent's key path taken out."""
    problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if spec.key:
        for path in {spec.key, os.path.expanduser(spec.key), os.path.realpath(spec.key)}:
            problem = problem.replace(path, "(its key)")
    return Contact(False, at, problem)


def agents(
    reg: Registry,
    specs: list[AgentSpec],
    who: User,
    *,
    contacts: Mapping[str, Contact],
    detected: Mapping[str, int | None],
) -> list[dict[str, Any]]:
    """Each agent of `specs` with its GPUs (configured, else as `detected` when the dispatcher
    reached it; None: not known yet), slots, the running jobs on it and its last `contacts`."""
    on: dict[str, list[q.Job]] = {}
    for job in q.running(reg):
        on.setdefault(job.agent or "", []).append(job)
    rows = []
    for spec in specs:
        gpus = spec.gpus if spec.gpus is not None else detected.get(spec.name)
        jobs = on.get(spec.name, [])
        contact = contacts.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "address": spec.address,
                "gpus": gpus,
                "slots": spec.slots(gpus),
                "used": sum(job.slots for job in jobs),
                "running": [
                    {
                        "run_id": job.run_id if who.admin or job.user == who.name else None,
                        "user": job.user,
                        "gpus": job.gpus,
                    }
                    for job in jobs
                ],
                "reachable": contact.reachable if contact else None,
                "problem": contact.problem if contact else None,
                "checked_at": iso(contact.at) if contact else None,
            }
        )
    return rows
