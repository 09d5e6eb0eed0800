"""The agents' Python API; `mllib agents ...` commands are thin layers over these functions.

>>> add_agent("gpu1", "10.0.0.5", user="ml", key="~/.ssh/id_ed25519", trust_host_key=True)  # doctest: +SKIP
>>> check_agent("gpu1")["gpus"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mllib.agents import hostkeys, install
from mllib.agents.config import (
    AGENTS_FILE,
    AgentSpec,
    check_name,
    delete_agent,
    detected_gpus,
    get_agent,
    load_agents,
    save_agent,
)
from mllib.agents.connection import AgentUnreachable, connect
from mllib.agents.rpc import AgentClient
from mllib.config import Config
from mllib.errors import UsageError

DEFAULT_PRUNE_DAYS = 7.0


def add_agent(
    name: str,
    host: str,
    *,
    port: int = 22,
    user: str | None = None,
    key: str | None = None,
    gpus: int | None = None,
    python: str = "python3",
    cache_gb: float | None = None,
    trust_host_key: bool = False,
    confirm: hostkeys.Confirm | None = None,
    on_connect: Callable[[AgentSpec], None] | None = None,
) -> dict[str, Any]:
    """Record an agent after logging in (host key trusted) and installing the agent program there.

    `cache_gb` caps the agent's blob cache (code, models, dataset chunks; default 50 GB).
    `on_connect` is called once the arguments are checked, just before connecting."""
    check_name(name)
    if gpus is not None and gpus < 0:
        raise UsageError("--gpus must be 0 or more")
    if cache_gb is not None and cache_gb < 0:
        raise UsageError("--cache-gb must be 0 or more")
    if key is not None:
        from pathlib import Path

        path = Path(key).expanduser()
        if not path.is_file():
            raise UsageError(f"No key file {key}", hint="Give the path of a private key file.")
        key = str(path.resolve())
    spec = AgentSpec(
        name, host, port=port, user=user, key=key, gpus=gpus, python=python, cache_gb=cache_gb
    )
    if on_connect is not None:
        on_connect(spec)
    with connect(spec, trust_host_key=trust_host_key, confirm=confirm) as conn:
        installed = install.ensure_installed(conn)
        with AgentClient(conn) as agent:
            info = agent.call("info")
    save_agent(spec)
    return _report(spec, info, installed=installed is not None)


def list_agents(config: Config | None = None) -> list[dict[str, Any]]:
    return [{**s.to_json(), "source": s.source} for s in load_agents(config)]


def check_agent(name: str, config: Config | None = None) -> dict[str, Any]:
    """Reach the agent and report what it offers: Python, GPUs, free disk, Docker, active runs."""
    spec = get_agent(name, config)
    started = time.monotonic()
    try:
        with connect(spec) as conn:
            installed = install.ensure_installed(conn)
            with AgentClient(conn) as agent:
                info = agent.call("info")
    except AgentUnreachable as exc:
        return {"name": name, "address": spec.address, "reachable": False, "error": exc.message}
    report = _report(spec, info, installed=installed is not None)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


def _report(spec: AgentSpec, info: dict[str, Any], *, installed: bool) -> dict[str, Any]:
    detected = detected_gpus(info)
    return {
        "name": spec.name,
        "address": spec.address,
        "reachable": True,
        "agent_version": info["version"],
        "updated_now": installed,
        "python": info["python"],
        "gpus": spec.gpu_count(detected),
        "gpus_from": "configured"
        if spec.gpus is not None
        else ("nvidia-smi" if detected else "none found"),
        "gpu_names": info["gpus"] or [],
        "slots": spec.slots(detected),
        "disk_free_gb": round(info["disk_free_bytes"] / 1e9, 1),
        "docker": info["docker"],
        "docker_problem": None if info["docker"] else info["runtimes"].get("docker"),
        "runtimes": {k: v or "available" for k, v in info["runtimes"].items()},
        "active_runs": info["active_runs"],
    }


def remove_agent(name: str, config: Config | None = None) -> None:
    spec = get_agent(name, config)
    if not spec.source.endswith(AGENTS_FILE):
        raise UsageError(
            f"Agent {name} is declared in {spec.source}", hint="Remove it from that file instead."
        )
    delete_agent(name)


def forget_host_key(name: str, config: Config | None = None) -> bool:
    """Drop the recorded host key of an agent (after checking a changed key is legitimate)."""
    spec = get_agent(name, config)
    return hostkeys.forget(spec.host, spec.port)


def prune_agent(
    name: str,
    *,
    older_than_days: float = DEFAULT_PRUNE_DAYS,
    cache_gb: float | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Free disk on an agent: the folders of runs that ended `older_than_days` ago (synced runs'
    go at once after their sync), dataset copies and project venvs no active run uses and none
    used since, stale uploads, and cached blobs and venvs beyond `cache_gb` (default: the
    agent's cap), least recently used first. Only rebuildable things go: a rerun sends the agent what it lacks again."""
    from mllib.agents.rpc import open_agent

    if older_than_days < 0 or (cache_gb is not None and cache_gb < 0):
        raise UsageError("--older-than and --cache-gb must be 0 or more")
    spec = get_agent(name, config)
    cap = int(cache_gb * 1e9) if cache_gb is not None else spec.cache_bytes
    with open_agent(spec) as agent:
        report = agent.call("prune", older_than_s=older_than_days * 86400, cache_bytes=cap)
    return {"name": name, "cache_cap_bytes": cap, **report}


def sync_agents(ws, name: str | None = None) -> dict[str, Any]:
    """Pull records and artifacts from one agent or all; returns per agent what was merged."""
    from mllib.agents.rpc import open_agent
    from mllib.agents.sync import sync_agent

    specs = [get_agent(name, ws.project.config)] if name else load_agents(ws.project.config)
    results: dict[str, Any] = {}
    for spec in specs:
        try:
            with open_agent(spec) as agent:
                report = sync_agent(ws, agent)
            results[spec.name] = vars(report)
        except AgentUnreachable as exc:
            results[spec.name] = {"error": exc.message}
    return results


__all__ = [
    "AgentSpec",
    "add_agent",
    "check_agent",
    "forget_host_key",
    "list_agents",
    "prune_agent",
    "remove_agent",
    "sync_agents",
]
