"""Preparing a run whole before anything executes: params checked, datasets bound, code stored,
then the record, the run folder and its spec written together. Nothing is recorded until every
check has passed, and a failure part way leaves nothing behind."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mllib._version import __version__
from mllib.code_snapshot import snapshot
from mllib.errors import NotFoundError
from mllib.identity import current_user
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.registry.artifacts import model_artifact
from mllib.registry.runs import (
    RunRecord,
    create_run,
    finish_run,
    new_run_id,
    now,
    params_hash,
    recorded_params,
)
from mllib.runs.backend import backend_name, get_backend
from mllib.runs.target import ModelTarget, config_params, resolve_params
from mllib.runtime.processes import create_time
from mllib.store import materialize_tree

if TYPE_CHECKING:
    from pathlib import Path

    from mllib.datasets.progress import Progress
    from mllib.terminal import Notify
    from mllib.workspace import Workspace

# Runtimes that build the run's environment from its plan (ssh: whatever the agent picks;
# server: whatever agent the team server picks).
PLANNED_RUNTIMES = ("venv", "docker", "ssh", "server")


def prepare_run(
    target: ModelTarget,
    actions: list[str],
    cli_params: dict[str, Any],
    *,
    runtime: str,
    runtime_note: str,
    env_target: str = "local",
    seed: int | None = None,
    source_run: RunRecord | None = None,
    rerun_of: RunRecord | None = None,
    data: Sequence[str] | None = None,
    progress: Progress | None = None,
    host: str | None = "local",
    notify: Notify | None = None,
) -> RunRecord:
    """Check everything, then record a queued run and write its folder. Raises before writing anything.

    `host` is where it runs: "local", or for a remote run its agent (None until placed).
    `data` holds `KEY=NAME[@VERSION]` items (`--data`); with `[data]` of mllib.toml and the
    datasets of the run it continues, they are materialised read-only before the run is recorded
    (for a local run; an agent materialises its own copy). `notify` hears what a person should
    know (a large file left out of the code snapshot); mllib.terminal.notice by default.
    """
    from mllib.datasets.binding import (
        binding_env,
        materialize_uses,
        record_uses,
        resolve_bindings,
    )

    if notify is None:
        from mllib.terminal import notice

        notify = notice
    ws = target.ws
    lookup = get_backend(backend_name(runtime)).dataset_lookup(ws)
    if rerun_of is not None:  # exactly the versions the original read
        bindings = resolve_bindings(ws, inherit_from=rerun_of.id, with_config=False, lookup=lookup)
    else:
        inherit = source_run.id if source_run else None
        bindings = resolve_bindings(ws, data, inherit_from=inherit, lookup=lookup)
    param_env = target.param_env
    if rerun_of is not None:
        target, cli_params = _rerun_secrets(target, cli_params, rerun_of, notify)
        original = ws.run_folder(rerun_of).spec_or_none()
        param_env = original.param_env if original is not None else None  # None: read them again
    if source_run is not None:
        resolved = recorded_params(ws.registry, source_run.id)
    else:
        resolved = resolve_params(target, cli_params, env_target, binding_env(ws, bindings))
    if env_target == "local":  # an agent materialises its own copy from the chunks it is sent
        materialize_uses(ws, bindings, progress)
    model_tree = model_artifact(ws.registry, source_run.id) if source_run else None
    if source_run is not None and model_tree is None:
        raise NotFoundError(
            f"Run {source_run.id} has no saved model", hint="Evaluate a successful training run."
        )
    tree, files = snapshot(ws.store, ws.project.root, ws.project.config)
    for rel, size in files.skipped_large:
        notify(
            f"{rel} ({size / 1e6:.0f} MB) is not part of the code snapshot; upload data as a dataset"
        )
    run_id = new_run_id()
    folder = RunFolder(ws.run_dir(run_id))
    cli_names = [k for k, src in resolved.sources.items() if src == "cli"]
    typed_cli = {k: resolved.values[k] for k in cli_names if k not in resolved.secret}
    secret_cli = {k: resolved.values[k] for k in cli_names if k in resolved.secret}
    spec = RunSpec(
        run_id=run_id,
        actions=actions,
        model_file=target.rel_file,
        model_class=target.info.class_name,
        cli_params=typed_cli if source_run is None else {},
        config_params=config_params(target) if source_run is None else {},
        seed=ws.project.config.seed if seed is None else seed,
        input_model=RunFolder.INPUT_MODEL if source_run else None,
        param_env=param_env,
        python=platform.python_version(),
    )
    try:
        spec.write(folder.path)
        folder.write_secret_params(secret_cli if source_run is None else {})
        if model_tree is not None:
            materialize_tree(ws.store, model_tree["sha256"], folder.input_model_dir)
        if rerun_of is not None and rerun_of.code_hash and rerun_of.code_hash != tree.sha256:
            materialize_tree(ws.store, rerun_of.code_hash, folder.code_snapshot)
        if runtime in PLANNED_RUNTIMES:
            write_env_plan(ws, folder, actions, folder.code_dir(ws.project.root))
        record = RunRecord(
            id=run_id,
            model=target.name,
            action="+".join(actions),
            status="queued",
            created_at=now(),
            model_class=target.info.class_name,
            model_file=target.rel_file,
            project_dir=str(ws.project.root),
            runtime=runtime,
            runtime_note=runtime_note,
            env_target=env_target,
            host=host,
            user=current_user(),
            code_hash=rerun_of.code_hash if rerun_of and rerun_of.code_hash else tree.sha256,
            params_hash=params_hash(resolved.recorded),
            seed=spec.seed,
            source_run_id=source_run.id if source_run else None,
            rerun_of=rerun_of.id if rerun_of else None,
            run_dir=str(folder.path),
            log_path=str(folder.log_file),
            supervisor_pid=os.getpid(),
            supervisor_ctime=create_time(os.getpid()),
            attempt=1,
            mllib_version=__version__,
        )
        with ws.registry.transaction():
            create_run(ws.registry, record, resolved.values, resolved.sources, resolved.secret)
            record_uses(ws.registry, run_id, bindings)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and finish_run(
            ws.registry, run_id, "cancelled", None, "cancelled before it started"
        ):
            folder.discard_secret_params()
            raise  # Ctrl-C just after the run was recorded: it stays, cancelled
        import shutil

        shutil.rmtree(folder.path, ignore_errors=True)
        raise
    return record


def step_of(actions: Sequence[str]) -> str:
    """The environment step a run's actions need (mllib.runtime.env_plan.STEPS)."""
    if "train" in actions:
        return "train"
    return "evaluate" if "evaluate" in actions else "serve"


def write_env_plan(
    ws: Workspace, folder: RunFolder, actions: Sequence[str], code_dir: Path
) -> None:
    """Decide here, on the submitting machine, what the run's venv or image holds (pins are
    this machine's versions), and write it into the run's folder for its runtime, here or on an
    agent. A requirement that cannot be read leaves no plan: the runtime reads it again and
    fails the run as a user_error naming the line."""
    from mllib.errors import MllibError
    from mllib.persistence import saved_modules
    from mllib.runtime.env_plan import plan_environment

    step = step_of(actions)
    modules = saved_modules(folder.input_model_dir) if step != "train" else None
    try:
        plan = plan_environment(
            ws.project.root,
            ws.project.config,
            code_dir=code_dir,
            step=step if ws.project.config.runtime.per_step else "train",
            model_modules=modules,
        )
    except MllibError:
        return
    plan.write(folder.env_plan_file)


def _rerun_secrets(
    target: ModelTarget, cli_params: dict[str, Any], original: RunRecord, notify: Notify
) -> tuple[ModelTarget, dict[str, Any]]:
    """A rerun's secret params are resolved again (environment, env file, mllib.toml, default)
    rather than given the marker they were recorded as; one given on the command line then is
    not known any more, which is said."""
    from mllib.registry.runs import get_param_sources, get_secret_params

    secret = get_secret_params(target.ws.registry, original.id)
    if not secret:
        return target, cli_params
    sources = get_param_sources(target.ws.registry, original.id)
    for name in sorted(n for n in secret if sources.get(n) == "cli"):
        notify(
            f"the secret param {name} of run {original.id} was given on the command line "
            "and not recorded; this run takes it from the environment, the env file, mllib.toml "
            "or its default"
        )
    specs = {
        name: replace(spec, declared_secret=True) if name in secret else spec
        for name, spec in target.info.params.items()
    }
    info = replace(target.info, params=specs)
    return ModelTarget(target.ws, info), {k: v for k, v in cli_params.items() if k not in secret}
