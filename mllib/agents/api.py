"""The agents' Python API; `mllib agents ...` commands are thin layers over these functions.

>>> add_agent("gpu1", "10.0.0.5", user="ml", key="~/.ssh/id_ed25519", trust_host_key=True)  # doctest: +SKIP
>>> check_agent("gpu1")["gpus"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from mllib.agents import hostkeys, install
from mllib.agents.config import (
    AGENTS_FILE,
    AgentSpec,
    check_name,
    delete_agent,
    get_agent,
    load_agents,
    save_agent,
)
from mllib.agents.connection import AgentUnreachable, connect
from mllib.agents.rpc import AgentClient
from mllib.config import Config
from mllib.errors import UsageError


def add_agent(
    name: str,
    host: str,
    *,
    port: int = 22,
    user: str | None = None,
    key: str | None = None,
    gpus: int | None = None,
    python: str = "python3",
    trust_host_key: bool = False,
    confirm: hostkeys.Confirm | None = None,
) -> dict[str, Any]:
    """Record an agent after logging in (host key trusted) and installing the agent program there."""
    check_name(name)
    if gpus is not None and gpus < 0:
        raise UsageError("--gpus must be 0 or more")
    if key is not None:
        from pathlib import Path

        path = Path(key).expanduser()
        if not path.is_file():
            raise UsageError(f"No key file {key}", hint="Give the path of a private key file.")
        key = str(path.resolve())
    spec = AgentSpec(name, host, port=port, user=user, key=key, gpus=gpus, python=python)
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
    detected = len(info["gpus"]) if info["gpus"] is not None else None
    return {
        "name": spec.name,
        "address": spec.address,
        "reachable": True,
        "agent_version": info["version"],
        "updated_now": installed,
        "python": info["python"],
        "gpus": spec.gpus if spec.gpus is not None else (detected or 0),
        "gpus_from": "configured"
        if spec.gpus is not None
        else ("nvidia-smi" if detected else "none found"),
        "gpu_names": info["gpus"] or [],
        "slots": spec.slots(detected),
        "disk_free_gb": round(info["disk_free_bytes"] / 1e9, 1),
        "docker": info["docker"],
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
    "remove_agent",
    "sync_agents",
]
