"""Scheduled evaluations on a team server (mllib.server.schedules): the same `mllib schedules`
commands and `--json` keys as local ones, each a request.

>>> server = Server.connect()  # doctest: +SKIP
>>> list_schedules(server)[0]["every"]  # doctest: +SKIP
'1d'
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mllib.client.http import Server
from mllib.errors import NotFoundError

if TYPE_CHECKING:
    from mllib.project import Project

PATH = "/api/v1/schedules"
ENDED = ("succeeded", "failed", "cancelled", "breached")  # a schedule's run's final statuses
POLL_S = 0.5


def create(
    server: Server,
    run_id: str,
    every: str,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Have the server repeat evaluation run `run_id` every `every`, each run with the
    variables `env` (which the server keeps sealed)."""
    return _post(server, {"run_id": run_id}, every, gates, data, env)


def create_for_model(
    server: Server,
    model: str,
    every: str,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Have the server evaluate the version `model` (NAME@ALIAS) names every `every`, its first
    evaluation queued now, each run with the variables `env` (which the server keeps sealed):
    the schedule, with `first_run_id` and `version`."""
    return _post(server, {"model": model}, every, gates, data, env)


def _post(
    server: Server,
    target: dict[str, str],
    every: str,
    gates: dict[str, float] | None,
    data: list[str] | None,
    env: dict[str, str] | None,
) -> dict[str, Any]:
    """POST a new schedule of `target` (a run id or a model name) to the server."""
    body = {**target, "every": every, "gates": gates or {}, "data": data or [], "env": env or {}}
    answer: dict[str, Any] = server.post(PATH, body, retry=False)
    return answer


def run_env(project: Project, param_env: list[str]) -> dict[str, str]:
    """The variables a schedule's runs get, as a `--remote` submission's: the `.env.remote`
    values, and those of `param_env` (the variables the model's params read) set here."""
    env = dict(project.env_values("remote"))
    return env | {name: os.environ[name] for name in param_env if name in os.environ}


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


def ended_run(server: Server, schedule_id: str, run_id: str) -> dict[str, Any]:
    """The schedule's run `run_id` as `schedules show` gives it, once its status and gates are
    final (a run that ended reads `breached` when a gate broke)."""
    while True:
        runs = show(server, schedule_id)["runs"]
        found: dict[str, Any] | None = next((r for r in runs if r["run_id"] == run_id), None)
        if found is None:
            raise NotFoundError(f"Run {run_id} is not among schedule {schedule_id}'s newest runs")
        if found["status"] in ENDED:
            return found
        time.sleep(POLL_S)
