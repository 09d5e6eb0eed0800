"""`mllib serve model.py`: the trained model behind the same server a deployment runs, in the
foreground on localhost, logging to the terminal. Ctrl-C stops it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mllib import sentry_plugin
from mllib.errors import UsageError
from mllib.runs.model_choice import ModelChoice, choose
from mllib.runs.target import ModelTarget, workspace_of
from mllib.serving import logs
from mllib.serving.control.paths import serving_dir
from mllib.serving.control.ports import port_free
from mllib.serving.control.servable import from_run, from_target, materialize, server_spec
from mllib.serving.control.settings import Settings
from mllib.serving.spec import INFERENCE_MODES, ServerSpec
from mllib.terminal import Notify, notice
from mllib.workspace import Workspace


def dev_spec(
    target: ModelTarget | None,
    *,
    choice: ModelChoice | None = None,
    params: dict[str, Any] | None = None,
    port: int | None = None,
    workers: int | None = None,
    inference: str | None = None,
    log_format: str = logs.TEXT,
    notify: Notify | None = notice,
) -> ServerSpec:
    """Everything needed to serve the model version `choice` names (see
    mllib.runs.model_choice: without one, the newest version of `target`'s model, trained with
    `params` when given; for a LitServe API, its code as it is now), checked before anything
    starts; `notify` hears which version."""
    ws = workspace_of(target)
    settings = Settings.from_config(ws.project.config).serve
    from mllib.ranges import SERVE_PORT

    port = SERVE_PORT.check(settings.port if port is None else port, "--port")
    if not port_free(settings.host, port):
        raise UsageError(f"Port {port} is already in use", hint="Pass another with --port.")
    if inference is not None and inference not in INFERENCE_MODES:
        raise UsageError(
            f"--inference must be inline or worker, not {inference!r}",
            hint="inline: the HTTP processes predict (CPU models); worker: worker processes do.",
        )
    choice = choice or ModelChoice()
    by_file = not (choice.names_model or choice.run or choice.best)
    servable = from_target(target, params, notify=notify) if target and by_file else None
    if servable is None:
        servable = from_run(ws, choose(ws, choice, target, params, notify=notify).run)
    bundle = materialize(ws, servable)
    return server_spec(
        servable,
        bundle,
        settings,
        inference=inference or settings.inference,
        workers=settings.workers if workers is None else workers,
        api_servers=settings.api_servers,
        env="dev",
        state_dir=str(serving_dir(ws) / "dev" / str(port)),
        host=settings.host,
        port=port,
        log_format=log_format,
        max_batch=settings.max_batch,
    )


def serve(
    spec: ServerSpec, ws: Workspace, announce: Callable[[ServerSpec], None] | None = None
) -> int:
    """Run the dev server of project `ws` in this process until Ctrl-C; returns its exit code."""
    from mllib.serving.server.main import run_server  # LitServe: only once it is needed

    os.environ.update(ws.project.env_under_shell("local"))
    os.environ.update(sentry_plugin.environment(ws.project))
    if announce:
        announce(spec)
    return run_server(spec)
