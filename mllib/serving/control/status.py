"""What `mllib deploy status` shows: per environment, what is deployed where (its replicas, and
the variants of a rollout with their share of traffic), and the live requests/s, p50/p99 latency
and error rate of each, read from the server's own /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mllib.serving.control import records
from mllib.serving.control.deploy import DeployContext, reconcile
from mllib.serving.control.fleet import SPEC_FILE as FLEET_SPEC_FILE
from mllib.serving.control.fleet import read_state
from mllib.serving.control.paths import LOG_FILE
from mllib.serving.control.scrape import EMPTY, Totals, quantile, scrape
from mllib.serving.control.settings import ENVS
from mllib.serving.spec import SPEC_FILE, PythonEnv

FIELDS = (
    "env", "state", "url", "model", "version", "run_id", "workers", "api_servers",
    "deployment_id", "pid", "user", "created_at", "live_at", "error", "log_path",
)  # fmt: skip
EXTRA = ("inference", "environment")  # read from the deployment's server spec


def _fleet_spec(folder: Path) -> dict[str, Any]:
    """The deployment's fleet-spec.json as its controller was started with it ({} when absent:
    a deployment of one server, before replicas, or its folder gone)."""
    import json

    try:
        spec = json.loads((folder / FLEET_SPEC_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _replica_spec(dep: records.Deployment) -> dict[str, Any] | None:
    """The spec the deployment's replicas were started with (None if its folder is gone). A
    deployment of one server (before replicas) has its spec in server.json."""
    import json

    folder = Path(dep.dir or "")
    spec = _fleet_spec(folder).get("stable")
    if spec is None:
        try:
            spec = json.loads((folder / SPEC_FILE).read_text())
        except (OSError, ValueError):
            return None
    return spec if isinstance(spec, dict) else None


def _inference(spec: dict[str, Any] | None) -> str | None:
    """inline or worker, as the deployment's replicas were told; specs written before the
    setting existed ran LitServe workers."""
    return None if spec is None else spec.get("inference", "worker")


def _environment(spec: dict[str, Any] | None) -> dict[str, str] | None:
    """The Python its servers run with (mllib.serving.spec.PythonEnv: mllib's own, or a venv
    of the model's dependencies, and why); specs written before it existed ran mllib's own."""
    if spec is None:
        return None
    return PythonEnv(**spec.get("python_env", {})).summary()


STATS_KEYS = ("rps", "p50_ms", "p99_ms", "error_rate", "requests_total", "window")


def live_stats(first: Totals | None, second: Totals | None, window_s: float) -> dict[str, Any]:
    """req/s over the window; p50/p99 and error rate over the window when it saw requests, else
    since the server started (`window` says which)."""
    if second is None:
        return dict.fromkeys(STATS_KEYS, None) | {"reachable": False}
    delta = second.minus(first) if first is not None else second
    scope, basis = ("window", delta) if delta.requests > 0 else ("since start", second)

    def ms(q: float) -> float | None:
        value = quantile(q, basis.buckets)
        return None if value is None else round(value * 1000, 3)

    return {
        "reachable": True,
        "rps": round(delta.requests / window_s, 2) if first is not None else None,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "error_rate": round(basis.server_errors / basis.requests, 4) if basis.requests else None,
        "requests_total": int(second.requests),
        "window": scope,
    }


def status(
    ctx: DeployContext, env: str | None = None, *, window_s: float = 1.0
) -> list[dict[str, Any]]:
    """One entry per environment (both, or `env`)."""
    reconcile(ctx.ws)
    envs = [env] if env else list(ENVS)
    for name in envs:
        ctx.settings.env(name)
    rows = []
    for name in envs:
        dep = records.live(ctx.ws.registry, name) or records.latest(ctx.ws.registry, name)
        row = {**dict.fromkeys(FIELDS + EXTRA), "env": name, "state": "none"}
        if dep is not None:
            row.update({f: getattr(dep, "id" if f == "deployment_id" else f) for f in FIELDS[1:]})
            spec = _replica_spec(dep)
            row["inference"], row["environment"] = _inference(spec), _environment(spec)
            row["restart"] = restart_view(dep)
        rows.append(row)
    live = [r for r in rows if r["state"] == "live"]
    first = {r["env"]: scrape(r["url"]) for r in live}
    if live:
        time.sleep(window_s)
    for row in live:
        before, after = first[row["env"]], scrape(row["url"])
        row["stats"] = live_stats(before, after, window_s)
        row.update(fleet_view(Path(row["log_path"]).parent))
        for variant in row["variants"]:
            name = variant["name"]
            variant["stats"] = live_stats(
                before.variants.get(name, EMPTY) if before else None,
                after.variants.get(name, EMPTY) if after else None,
                window_s,
            )
    for row in rows:
        for key in ("replicas", "variants", "gateway"):
            row.setdefault(key, [])
    return rows


def restart_view(dep: records.Deployment) -> dict[str, Any] | None:
    """What the deployment's supervisor is doing about a controller that died (None: nothing):
    its state, the attempt, the seconds to the next, why, and `summary`, the words status shows
    ("restarting (attempt 2, next in 4s)")."""
    from mllib.serving.control import supervisor

    state = supervisor.read(Path(dep.dir)) if dep.dir else {}
    if not state.get("restarts") and state.get("state") != "restarting":
        return None
    next_at = state.get("next_at") if state.get("state") == "restarting" else None
    return {
        "state": state.get("state"),
        "attempt": state.get("attempt"),
        "restarts": state.get("restarts"),
        "next_in_s": round(max(0.0, next_at - time.time()), 1) if next_at else None,
        "reason": state.get("reason"),
        "summary": supervisor.summary(state),
    }


def fleet_view(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """`replicas`, `variants` and `gateway` of the deployment in `folder`, as its controller last
    wrote them: each replica (an HTTP process of one of its servers here, or a server on an
    agent) with its variant, version, host, pid, state and requests in flight; each variant with
    its version, share of traffic, replicas and their hosts. With replicas on agents, this
    machine's servers are the gateway (keys, limits, routing; they answer only while no agent
    replica is ready): their processes are `gateway`, not replicas; else `gateway` is []."""
    state = read_state(folder)
    servers = state.get("servers", {})
    on_agents = bool(_fleet_spec(folder).get("agents"))
    replicas, gateway = [], []
    for server_id, processes in sorted(state.get("processes", {}).items()):
        server = servers.get(server_id)
        if server is None:
            continue
        for process in processes:
            (gateway if on_agents and server["public"] else replicas).append(
                {
                    "id": f"{server_id}.{process['index']}",
                    "server": server_id,
                    "variant": server["variant"] if server["state"] != "retiring" else "retiring",
                    "version": server["version"],
                    "host": server["host"],
                    "pid": process["pid"],
                    "state": process["state"],
                    "in_flight": process["in_flight"],
                    "connections": process["connections"] if server["public"] else None,
                }
            )
    stable_spec = state.get("stable_spec") or {}
    version = stable_spec.get("servable", {}).get("version")
    candidate = state.get("candidate")
    for remote in state.get("remote") or []:  # on agents (agentservers.py)
        server = remote.get("server") or {}
        variant = remote.get("variant", "stable")
        served = version
        if variant != "stable" and candidate:
            served = candidate["spec"]["servable"].get("version")
        replicas.append(
            {
                "id": remote["id"],
                "server": remote["id"],
                "variant": "retiring" if remote["state"] == "leaving" else variant,
                "version": str(served) if served else server.get("version"),
                "host": remote["agent"],
                "pid": server.get("pid"),
                "state": "ready" if remote["state"] == "live" else remote["state"],
                "in_flight": None,
                "connections": None,
                "address": remote["server"].get("link") if remote["state"] == "live" else None,
                "error": remote.get("error"),
            }
        )
    variants = []
    if stable_spec:
        variants.append(
            _variant("stable", stable_spec["servable"], replicas, 100.0 - _share(candidate))
        )
    if candidate:
        entry = _variant(
            candidate["variant"], candidate["spec"]["servable"], replicas, candidate["weight"]
        )
        entry.update(
            mode=candidate["mode"],
            sticky_by=candidate.get("sticky_by"),
            steps_left=candidate.get("steps") or [],
            failing=(candidate.get("verdict") or {}).get("failing"),
            judged=candidate.get("verdict") or {},
        )
        variants.append(entry)
    return {"replicas": replicas, "variants": variants, "gateway": gateway}


def _share(candidate: dict[str, Any] | None) -> float:
    """The share of requests stable keeps beside a candidate (a shadow takes none)."""
    if not candidate or candidate["variant"] == "shadow":
        return 0.0
    return float(candidate["weight"])


def _variant(
    name: str, servable: dict[str, Any], replicas: list[dict[str, Any]], weight: float
) -> dict[str, Any]:
    """A variant's entry: what it serves, its share, and its ready replicas (`hosts`: how many
    on each host, `local` for this machine)."""
    hosts: dict[str, int] = {}
    for replica in replicas:
        if replica["variant"] == name and replica["state"] == "ready":
            hosts[replica["host"]] = hosts.get(replica["host"], 0) + 1
    return {
        "name": name,
        "model": servable["model"],
        "version": servable["version"],
        "run_id": servable["run_id"],
        "weight": weight,
        "replicas": sum(hosts.values()),
        "hosts": dict(sorted(hosts.items())),
    }


def log_source(ctx: DeployContext, env: str) -> tuple[Path, Callable[[], bool]]:
    """The log of `env`'s current (else newest) deployment, and whether its server still runs."""
    from mllib.errors import NotFoundError
    from mllib.runtime.processes import is_alive

    ctx.settings.env(env)
    dep = records.live(ctx.ws.registry, env) or records.latest(ctx.ws.registry, env)
    if dep is None:
        raise NotFoundError(f"Nothing was ever deployed to {env}")
    path = Path(dep.log_path or Path(dep.dir or ".") / LOG_FILE)
    return path, lambda: is_alive(dep.pid, dep.pid_ctime)
