"""What a server process is told to serve and how (ServerSpec, written as JSON), and the
status.json it keeps up to date. Light to import: the deploy commands read these without
loading LitServe.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllib.serving import logs
from mllib.serving.servable import Servable
from mllib.serving.settings import INLINE, ServeSettings, http_processes

SPEC_FILE = "server.json"
STATUS_FILE = "status.json"


@dataclass
class ServerSpec:
    """Everything a server process needs, written as JSON beside a deployment's log."""

    bundle_dir: str
    model_file: str
    model_class: str
    model: str
    version: str  # "3", or "run:abcd" for a run without a model version
    run_id: str
    env: str  # dev, staging or prod
    state_dir: str  # status.json and metrics/ live here
    host: str = "127.0.0.1"
    port: int = 8000
    inference: str = INLINE  # inline: the HTTP processes predict; worker: LitServe workers do
    workers: int = 1  # processes holding the model
    api_servers: int = 1  # HTTP processes (inline: = workers)
    timeout_s: float = 30.0
    max_body_bytes: int = 10_000_000
    drain_s: float = 5.0
    restart_workers: bool = True
    max_batch: int = 1  # inline, requests a model's predict_batch() may answer at once
    registry_path: str | None = None  # set: /predict needs a key of this env
    key_refresh_s: float = 1.0
    flag_interval_s: float = 300.0
    log_format: str = logs.JSON
    deployment: str = "dev"
    reuse_port: bool = False  # may share the port with the deployment it replaces
    listen_when_ready: bool = False  # listen only once every worker has loaded the model
    show_errors: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return {"env": self.env, "model": self.model, "version": self.version}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> ServerSpec:
        return cls(**json.loads(path.read_text()))


def write_status(state_dir: Path, state: str, **fields: Any) -> None:
    """status.json: starting, ready, failed or stopped (written whole, then renamed)."""
    tmp = state_dir / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"state": state, "pid": os.getpid(), "time": time.time(), **fields}))
    os.replace(tmp, state_dir / STATUS_FILE)


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def url_of(spec: ServerSpec) -> str:
    host = "127.0.0.1" if spec.host in ("0.0.0.0", "::") else spec.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{spec.port}"


def spec_for(
    servable: Servable,
    bundle: Path,
    serve: ServeSettings,
    *,
    env: str,
    state_dir: Path,
    host: str,
    port: int,
    workers: int,
    api_servers: int,
    inference: str,
    **extra: Any,
) -> ServerSpec:
    """The spec serving `servable` from its materialized `bundle`, with [serve]'s limits."""
    return ServerSpec(
        bundle_dir=str(bundle),
        model_file=servable.model_file,
        model_class=servable.model_class,
        model=servable.model,
        version=str(servable.version) if servable.version else f"run:{servable.run_id}",
        run_id=servable.run_id,
        env=env,
        state_dir=str(state_dir),
        host=host,
        port=port,
        inference=inference,
        workers=workers,
        api_servers=http_processes(inference, workers, api_servers),
        timeout_s=serve.timeout_s,
        max_body_bytes=int(serve.max_body_mb * 1e6),
        drain_s=serve.drain_s,
        restart_workers=serve.restart_workers,
        **extra,
    )
