"""Which Python a model's servers run with: mllib's own environment, or a venv of what the
model's predict needs.

A model whose serving code imports only what mllib's environment has is served by mllib's own
python, as always: nothing is built. One trained in a venv or a Docker image (or in a project
that asks for venvs, `[runtime] local = "venv"`), or whose predict (or its pickle) needs a
module mllib's environment lacks, is served from a venv of its serving step's dependencies: the
plan a venv run's `predict` gets (mllib.runtime.env_plan: requirements.txt, pyproject,
`[runtime] packages`, detected imports, pinned to this machine's versions) plus the server's
own packages (LitServe and what it runs on), built once by the venv runtime's builder into its
cache (mllib.runtime.venvs) and reused by every later server with the same dependencies. mllib
itself comes from this installation, on the servers' path, as for a venv run's worker.

>>> with serving_python(ws, servable, bundle, say=print) as python_env:  # doctest: +SKIP
...     start_servers(dataclasses.replace(spec, python_env=python_env))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.errors import MllibError
from mllib.registry.runs import get_run
from mllib.serving.spec import CODE_DIR, MODEL_DIR, VENV, PythonEnv, Servable
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.runtime.env_plan import EnvPlan

TRAINED_IN_VENVS = ("venv", "docker")  # runtimes whose runs had dependencies of their own


class ServingEnvError(MllibError):
    """The serving venv could not be built: a requirement's fault (`failure_class` user_error,
    the message names its line and what to fix), or the package index's (system_error)."""

    def __init__(self, message: str, failure_class: str) -> None:
        from mllib.errors import EXIT_SYSTEM
        from mllib.protocol.failure import SYSTEM_ERROR

        system = failure_class == SYSTEM_ERROR
        super().__init__(message, hint="Try again once the index answers." if system else None)
        self.failure_class = failure_class
        if system:
            self.exit_code = EXIT_SYSTEM


@contextmanager
def serving_python(
    ws: Workspace, servable: Servable, bundle: Path, *, say: Callable[[str], None]
) -> Iterator[PythonEnv]:
    """The Python to serve `servable` (materialized in `bundle`) with, the venv built first
    when needed (its lines to `say`); a venv is held until the block ends, by which time the
    servers started with it hold it themselves."""
    why = venv_reason(ws, servable, bundle)
    if why is None:
        yield PythonEnv(why="predict needs nothing mllib's environment lacks")
        return
    from mllib.runtime.installer import InstallFailed
    from mllib.runtime.venvs import cap_bytes, ensure_env

    plan = serving_plan(ws, bundle)
    say(f"Serving from a venv of the model's own dependencies: {why}")
    try:
        env = ensure_env(
            plan, progress=say, cap_bytes=cap_bytes(ws.project.config.runtime.env_cache_gb)
        )
    except InstallFailed as exc:
        from mllib.runtime.install_errors import classify_install_failure

        failure_class, message = classify_install_failure(exc, plan)
        raise ServingEnvError(
            f"The serving venv could not be built: {message}", failure_class
        ) from None
    try:
        yield PythonEnv(
            kind=VENV,
            python=env.python,
            key=env.key,
            why=why,
            variables=env.variables(),
            lock=str(env.lock_path),
        )
    finally:
        env.release()


def venv_reason(ws: Workspace, servable: Servable, bundle: Path) -> str | None:
    """Why `servable` needs a venv of its own to serve from; None when mllib's will do."""
    from mllib.persistence import saved_modules
    from mllib.runtime.imports import missing_modules

    missing = missing_modules(
        bundle / CODE_DIR,
        step=_step(ws),
        extra_modules=saved_modules(bundle / MODEL_DIR),
    )
    if missing:
        names = ", ".join(f"{name} ({where})" for name, where in sorted(missing.items()))
        return f"mllib's environment cannot import {names}"
    config = ws.project.config
    if config.runtime.local == "venv":
        return f"{config.where} sets [runtime] local = 'venv'"
    run = get_run(ws.registry, servable.run_id)
    if run.runtime in TRAINED_IN_VENVS:
        return f"run {run.id} was trained in the {run.runtime} runtime"
    return None


def serving_plan(ws: Workspace, bundle: Path) -> EnvPlan:
    """The dependencies of a server of the model in `bundle`: its serving step's, and the
    server's own."""
    from mllib.persistence import saved_modules
    from mllib.runtime.env_plan import plan_environment

    return plan_environment(
        ws.project.root,
        ws.project.config,
        code_dir=bundle / CODE_DIR,
        step=_step(ws),
        model_modules=saved_modules(bundle / MODEL_DIR),
        server=True,
    )


def _step(ws: Workspace) -> str:
    return "serve" if ws.project.config.runtime.per_step else "train"
