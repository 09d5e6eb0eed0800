"""`mllib serve model.py`: the trained model behind the same server a deployment runs, in the
foreground on localhost, logging to the terminal. Ctrl-C stops it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mllib.errors import UsageError
from mllib.runs.launch import ModelTarget, find_source_run
from mllib.serving import logs
from mllib.serving.paths import serving_dir
from mllib.serving.ports import port_free
from mllib.serving.servable import from_run, materialize
from mllib.serving.serverspec import ServerSpec, spec_for
from mllib.serving.settings import INFERENCE_MODES, Settings


def dev_spec(
    target: ModelTarget,
    *,
    run: str | None = None,
    params: dict[str, Any] | None = None,
    port: int | None = None,
    workers: int | None = None,
    inference: str | None = None,
    log_format: str = logs.TEXT,
) -> ServerSpec:
    """Everything needed to serve the trained model of `target` (the run given, else the newest
    successful training run with the same params), checked before anything starts."""
    ws = target.ws
    settings = Settings.from_config(ws.project.config).serve
    servable = from_run(ws, find_source_run(target, run, dict(params or {}), "local"))
    from mllib.ranges import SERVE_PORT

    port = SERVE_PORT.check(settings.port if port is None else port, "--port")
    if not port_free(settings.host, port):
        raise UsageError(f"Port {port} is already in use", hint="Pass another with --port.")
    if inference is not None and inference not in INFERENCE_MODES:
        raise UsageError(
            f"--inference must be inline or worker, not {inference!r}",
            hint="inline: the HTTP processes predict (CPU models); worker: worker processes do.",
        )
    bundle = materialize(ws, servable)
    return spec_for(
        servable,
        bundle,
        settings,
        env="dev",
        state_dir=serving_dir(ws) / "dev" / str(port),
        host=settings.host,
        port=port,
        workers=settings.workers if workers is None else workers,
        api_servers=settings.api_servers,
        inference=inference or settings.inference,
        log_format=log_format,
        deployment="dev",
        max_batch=settings.max_batch,
    )


def serve(
    spec: ServerSpec, target: ModelTarget, announce: Callable[[ServerSpec], None] | None = None
) -> int:
    """Run the dev server in this process until Ctrl-C; returns its exit code."""
    from mllib.serving.server import run_server

    os.environ.update(target.ws.project.env_under_shell("local"))
    if announce:
        announce(spec)
    return run_server(spec)
