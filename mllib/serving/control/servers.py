"""Starting, watching and stopping the servers of a deployment on this machine.

Each server is a process group of its own (`python -m mllib.serving.server SPEC.json`) whose
HTTP processes are replicas of one variant: the stable server listens on the environment's port
(its processes predict what clients send them, and forward a candidate's share), a candidate's
server only on its link (forwarded requests; its HTTP port, on loopback, serves /health and
/metrics). Links live in the abstract unix namespace: a name no file holds, reachable with the
server's token only. Each server has counters of its own, which the controller made.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mllib.serving import pids
from mllib.serving.control import process
from mllib.serving.control.paths import LOG_FILE
from mllib.serving.control.ports import free_port
from mllib.serving.counters import COUNTERS_FILE, Counters
from mllib.serving.routes import ROUTES_FILE
from mllib.serving.spec import SPEC_FILE, ServerSpec, read_status

SERVERS_DIR = "servers"


@dataclass
class ServerState:
    """One server of a deployment, as fleet.json records it."""

    id: str  # s1, s2, ...
    variant: str  # stable, canary or shadow
    version: str  # the version label of what it serves
    run_id: str
    artifact: str
    dir: str
    link: str
    token: str
    url: str  # its own HTTP address
    public: bool  # listens on the environment's port
    ceiling: int  # the most processes it may run
    host: str = "local"
    pid: int | None = None
    pid_ctime: float | None = None
    state: str = "starting"  # starting, live, retiring, stopped, failed
    started_at: float = 0.0
    ready_at: float | None = None
    error: str | None = None
    slots: dict[str, int] = field(default_factory=dict)  # process index -> slot in the routes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def counters_path(self) -> Path:
        return Path(self.dir) / COUNTERS_FILE


class LocalServers:
    """Servers as process groups on this machine."""

    host = "local"

    def __init__(self, folder: Path, deployment: str, cwd: Path, slots: int) -> None:
        self.folder = folder
        self.deployment = deployment
        self.cwd = cwd
        self.slots = slots

    def start(
        self,
        template: ServerSpec,
        *,
        server: str,
        variant: str,
        processes: int,
        ceiling: int,
        public: tuple[str, int] | None = None,
        link_host: str | None = None,
    ) -> ServerState:
        """Start server `server` of `template` (its servable, keys, limits) as `variant`, with
        `processes` HTTP processes (at most `ceiling`); on the environment's `public` host and
        port (shared with the server it replaces, listening once its model is loaded), else on
        its link alone: a unix name, or TCP on `link_host` (a replica on an agent host, one
        process)."""
        folder = self.folder / SERVERS_DIR / server
        folder.mkdir(parents=True, exist_ok=True)
        Counters.create(folder / COUNTERS_FILE, processes=ceiling, slots=self.slots)
        address = f"unix:@mllib-{self.deployment}-{server}-{secrets.token_hex(4)}"
        if link_host is not None:
            address = f"tcp:{link_host}:{free_port(link_host)}"
        host, port = public or ("127.0.0.1", free_port("127.0.0.1"))
        spec = dataclasses.replace(
            template,
            state_dir=str(folder),
            deployment=self.deployment,
            host=host,
            port=port,
            workers=processes,
            api_servers=processes if template.inline else template.api_servers,
            max_workers=ceiling,
            reuse_port=public is not None,
            listen_when_ready=public is not None,
            variant=variant,
            replica=server,
            link=address,
            link_token=secrets.token_hex(16),
            metrics_dir=str(self.folder / "metrics"),
            routes_path=str(self.folder / ROUTES_FILE) if public else "",
            counters_path=str(folder / COUNTERS_FILE),
        )
        spec.write(folder / SPEC_FILE)
        state = ServerState(
            id=server,
            variant=variant,
            version=spec.servable.version_label,
            run_id=spec.servable.run_id,
            artifact=spec.servable.artifact,
            dir=str(folder),
            link=address,
            token=spec.link_token,
            url=spec.url,
            public=public is not None,
            ceiling=ceiling,
            host=self.host,
            started_at=time.time(),
        )
        from mllib.runtime.processes import create_time

        state.pid = process.start(
            folder / SPEC_FILE,
            self.folder / LOG_FILE,
            cwd=self.cwd,
            env=spec.python_env.variables,
            marker=self.deployment,
            extra_env={process.REPLICA_MARKER: self.marker(server)},
            python=spec.python_env.python,
            records=pids.folder_of(self.folder),
        )
        state.pid_ctime = create_time(state.pid)
        return state

    def marker(self, server: str) -> str:
        return f"{self.deployment}/{server}"

    def poll(self, state: ServerState) -> tuple[str, str | None]:
        """("ready" | "starting" | "failed" | "gone", why) for a server started here."""
        from mllib.runtime.processes import is_alive

        status = read_status(Path(state.dir))
        if status.get("state") == "failed":
            return "failed", status.get("error") or "the model could not be loaded"
        if not is_alive(state.pid, state.pid_ctime):
            return "gone", status.get("error") or "its server process exited"
        if status.get("pid") == state.pid and status.get("state") == "ready":
            return "ready", None
        return "starting", None

    def stop(self, state: ServerState, grace_s: float) -> None:
        """Stop it (SIGTERM: a graceful drain), killing whatever is left after `grace_s`."""
        if state.pid:
            process.stop(
                state.pid,
                marker=self.marker(state.id),
                grace_s=grace_s,
                var=process.REPLICA_MARKER,
                records=pids.folder_of(self.folder),
                server=state.id,
            )
