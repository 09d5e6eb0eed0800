"""Runs and the queue as the team server answers for them: the same JSON shapes as
mllib.runs.views gives locally, so `runs list/show/compare --json` print alike either way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mllib.client.http import Server

TERMINAL = ("succeeded", "failed", "cancelled")


def list_runs(
    server: Server, *, status: str | None = None, limit: int = 20, everyone: bool = False
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit, "all": everyone}
    if status:
        params["status"] = status
    runs: list[dict[str, Any]] = server.get("/api/v1/runs", params=params)
    return runs


def show(server: Server, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = server.get(f"/api/v1/runs/{run_id}")
    data.pop("queue", None)
    return data


def compare(server: Server, run_ids: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = server.post("/api/v1/runs/compare", {"run_ids": run_ids})
    return data


def cancel(server: Server, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = server.post(f"/api/v1/runs/{run_id}/cancel", retry=False)
    return data


def rerun(server: Server, run_id: str, env: dict[str, str]) -> dict[str, Any]:
    """Queue one of your runs again on the server (its code, params, seed); `env`: the
    variables it gets (this project's .env.remote: a run's secrets are not kept on the server)."""
    from mllib.registry.runs import new_run_id

    new = new_run_id()
    body = {"run_id": new, "idempotency_key": f"rerun-{new}", "env": env}
    data: dict[str, Any] = server.post(f"/api/v1/runs/{run_id}/rerun", body)
    return data


def queue(server: Server, *, everyone: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = server.get("/api/v1/queue", params={"all": everyone})
    return data


def agents(server: Server, *, check: bool = False) -> list[dict[str, Any]]:
    """The server's agents: GPUs, slots, the runs holding them, and whether each answered when
    the server last asked (`check`: ask each now)."""
    data: list[dict[str, Any]] = server.get("/api/v1/agents", params={"check": check})
    return data


def occupants(agent: dict[str, Any]) -> list[str]:
    """Who holds an agent's slots (`agents` rows): `RUN_ID (USER)`, or the user alone for the
    runs of others that the server does not name."""
    return [
        f"{run['run_id']} ({run['user']})" if run["run_id"] else run["user"]
        for run in agent["running"]
    ]


def follow_log(
    server: Server,
    run_id: str,
    write: Callable[[bytes], None],
    *,
    follow: bool = False,
    poll_s: float = 0.5,
) -> str:
    """Write the run's log; with `follow`, until it ends. Returns its status."""
    offset = 0
    while True:
        response = server.request("GET", f"/api/v1/runs/{run_id}/log", params={"offset": offset})
        status = str(response.headers.get("X-Run-Status", ""))
        if response.content:
            write(response.content)
            offset = int(response.headers["X-Log-Offset"])
            continue  # more may be waiting (answers are at most 4 MiB)
        if not follow or status in TERMINAL:
            return status
        time.sleep(poll_s)
