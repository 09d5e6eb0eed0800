"""Scheduled evaluations on a team server (mllib.server.schedules): the same `mllib schedules`
commands and `--json` keys as local ones, each a request.

>>> server = Server.connect()  # doctest: +SKIP
>>> list_schedules(server)[0]["every"]  # doctest: +SKIP
'1d'
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from mllib.client.http import Server

PATH = "/api/v1/schedules"


def create(
    server: Server,
    run_id: str,
    every: str,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
) -> dict[str, Any]:
    """Have the server repeat evaluation run `run_id` every `every`."""
    body = {"run_id": run_id, "every": every, "gates": gates or {}, "data": data or []}
    answer: dict[str, Any] = server.post(PATH, body, retry=False)
    return answer


def list_schedules(server: Server, everyone: bool = False) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.get(PATH, params={"all": everyone})
    return found


def show(server: Server, schedule_id: str) -> dict[str, Any]:
    found: dict[str, Any] = server.get(f"{PATH}/{quote(schedule_id, safe='')}")
    return found


def remove(server: Server, schedule_id: str) -> dict[str, Any]:
    path = f"{PATH}/{quote(schedule_id, safe='')}"
    removed: dict[str, Any] = server.request("DELETE", path, retry=False).json()
    return removed


def run_now(server: Server, schedule_id: str) -> dict[str, Any]:
    """Queue the schedule's run now: the queued run (`id`, `status`)."""
    queued: dict[str, Any] = server.post(f"{PATH}/{quote(schedule_id, safe='')}/run", retry=False)
    return queued
