"""`mllib serve model.py`: the trained model behind the same server a deployment runs, in the
foreground on localhost, logging to the terminal. Ctrl-C stops it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mllib import sentry_plugin
from mllib.errors import UsageError
from mllib.runs.model_choice import ModelChoice, choose
from mllib.runs.target import ModelTarget, workspace_of
from mllib.serving import logs
from mllib.serving.control.environment import serving_python
from mllib.serving.control.paths import serving_dir
from mllib.serving.control.ports import port_free
from mllib.serving.control.process import SERVER as SERVER_MODULE
from mllib.serving.control.servable import from_run, from_target, materialize, server_spec
from mllib.serving.control.settings import Settings
from mllib.serving.spec import INFERENCE_MODES, SPEC_FILE, VENV, ServerSpec
from mllib.terminal import Notify, err, notice
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


def print_line(line: str) -> None:
    """A line of the serving venv's build, on stderr as it is (an installer's brackets are not
    markup)."""
    err().print(line, markup=False, highlight=False, soft_wrap=True)


def serve(
    spec: ServerSpec,
    ws: Workspace,
    announce: Callable[[ServerSpec], None] | None = None,
    *,
    say: Callable[[str], None] = print_line,
) -> int:
    """Run the dev server of project `ws` in the foreground until Ctrl-C; returns its exit code.
    With mllib's own environment it runs in this process; from a venv of the model's own
    dependencies (mllib.serving.control.environment; its build's lines to `say`), as a child
    process of that venv's python."""
    os.environ.update(ws.project.env_under_shell("local"))
    os.environ.update(sentry_plugin.environment(ws.project))
    bundle = Path(spec.bundle_dir)
    with serving_python(ws, spec.servable, bundle, say=say) as python_env:
        spec = dataclasses.replace(spec, python_env=python_env)
        if announce:
            announce(spec)
        if python_env.kind == VENV:
            return _serve_from(spec)
        from mllib.serving.server.main import run_server  # LitServe: only once it is needed

        return run_server(spec)


def _serve_from(spec: ServerSpec) -> int:
    """`python -m mllib.serving.server SPEC.json` with the venv's python, in the foreground:
    SIGINT (Ctrl-C) and SIGTERM sent to this process are passed on to it (it shuts down
    gracefully, as in this process), and this process waits for it to stop. If this process
    dies (kill -9), the kernel sends the server SIGTERM."""
    import functools
    import signal
    import subprocess

    from mllib.serving import pids

    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    spec.write(state_dir / SPEC_FILE)
    env = {**os.environ, **spec.python_env.variables, "PYTHONUNBUFFERED": "1"}
    command = [spec.python_env.python, "-m", SERVER_MODULE, str(state_dir / SPEC_FILE)]
    # Killed with this process (kill -9 included): no server left holding the port unseen.
    stop_with_us = functools.partial(pids.die_with_parent, signal.SIGTERM)
    with subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, preexec_fn=stop_with_us
    ) as server:

        def pass_on(signum: int, frame: object) -> None:
            if server.poll() is None:
                server.send_signal(signum)

        previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return server.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
