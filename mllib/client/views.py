"""Runs and the queue as the team server answers for them: the same JSON shapes as
mllib.runs.views gives locally, so `runs list/show/compare --json` print alike either way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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


@dataclass(frozen=True)
class LogChunk:
    """Part of a run's log: `data` from byte `start` to `end`, and the run's status."""

    data: bytes
    start: int
    end: int
    status: str


def read_log(server: Server, run_id: str, *, offset: int = 0, tail: int | None = None) -> LogChunk:
    """The run's log from byte `offset` (at most 4 MiB), or its last `tail` bytes."""
    params = {"offset": offset} if tail is None else {"tail": tail}
    response = server.request("GET", f"/api/v1/runs/{run_id}/log", params=params)
    end = int(response.headers["X-Log-Offset"])
    data = bytes(response.content)
    return LogChunk(data, end - len(data), end, str(response.headers.get("X-Run-Status", "")))


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
        chunk = read_log(server, run_id, offset=offset)
        if chunk.data:
            write(chunk.data)
            offset = chunk.end
            continue  # more may be waiting (answers are at most 4 MiB)
        if not follow or chunk.status in TERMINAL:
            return chunk.status
        time.sleep(poll_s)


def metric_points(
    server: Server, run_id: str, after: int = 0, *, name: str | None = None
) -> list[tuple[int, str, int, float | None]]:
    """The run's metric points logged after seq `after`, in logging order (at most 50,000):
    (seq, name, step, value), non-finite values as floats again; `name`: that metric's alone."""
    from mllib.metric_values import from_stored

    params: dict[str, Any] = {"after": after}
    if name is not None:
        params["name"] = name
    answer = server.get(f"/api/v1/runs/{run_id}/metrics", params=params)
    return [(seq, name, step, from_stored(v)) for seq, name, step, v in answer["points"]]


# Live views (the dashboard's Runs pane): mllib.runs.live's answers, read through the server.


def runs_window(
    server: Server,
    *,
    status: str | None = None,
    model: str | None = None,
    user: str | None = None,
    text: str | None = None,
    limit: int = 1000,
    metric: str | None = None,
    everyone: bool = True,
) -> dict[str, Any]:
    """The newest `limit` matching runs as rows, how many match, and the cursor to go on from
    (`everyone`: everyone's for an admin; yours otherwise)."""
    params = {"status": status, "model": model, "user": user, "text": text, "metric": metric}
    query = {k: v for k, v in params.items() if v is not None}
    data: dict[str, Any] = server.get(
        "/api/v1/runs/window", params={**query, "limit": limit, "all": everyone}
    )
    return data


def runs_changes(
    server: Server, cursor: dict[str, int], *, metric: str | None = None, everyone: bool = True
) -> dict[str, Any]:
    """The runs changed after `cursor` as rows, which changed how, and the cursor to go on from."""
    params: dict[str, Any] = {**cursor, "all": everyone}
    if metric is not None:
        params["metric"] = metric
    data: dict[str, Any] = server.get("/api/v1/runs/changes", params=params)
    return data


def metric_choices(server: Server, run_ids: list[str]) -> list[str]:
    """The metric names these runs logged, in first-seen order."""
    if not run_ids:
        return []
    names: list[str] = server.post("/api/v1/runs/metric-names", {"run_ids": run_ids[:100]})
    return names


def models(server: Server) -> list[dict[str, Any]]:
    """The server's models (`mllib models list --json`)."""
    found: list[dict[str, Any]] = server.get("/api/v1/models")
    return found


def model(server: Server, ref: str) -> dict[str, Any]:
    """A model or one version on the server (`mllib models show --json`), with its trend."""
    found: dict[str, Any] = server.get(f"/api/v1/models/{quote(ref, safe='')}")
    return found


def alias(server: Server, ref: str, name: str | None, remove: bool = False) -> dict[str, Any]:
    """Set (or `remove`) an alias of a model version on the server: `{model, alias, version,
    before}` as mllib.models.aliases.AliasChange."""
    body = {"ref": ref, "alias": name, "remove": remove}
    changed: dict[str, Any] = server.post("/api/v1/models/aliases", body, retry=False)
    return changed
