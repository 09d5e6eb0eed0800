"""Ports of environments: kept from one deploy to the next, never shared with a stranger."""

from __future__ import annotations

import socket

from mllib.errors import UsageError
from mllib.serving.control import records
from mllib.serving.control.records import Deployment
from mllib.serving.control.settings import EnvSettings
from mllib.workspace import Workspace


def port_for(ws: Workspace, env: EnvSettings, current: Deployment | None) -> int:
    """The configured port, else the one the environment used last, else a free one. A port not
    held by this environment's own live server must be free (never share a stranger's)."""
    port = (
        env.port or (current.port if current else None) or records.last_port(ws.registry, env.name)
    )
    if port and current and current.port == port:
        return port
    if port:
        if not port_free(env.host, port):
            raise UsageError(
                f"Port {port} for {env.name} is in use by another program",
                hint=f"Free it, or set another with [deploy.{env.name}] port in mllib.toml.",
            )
        return port
    return free_port(env.host)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
