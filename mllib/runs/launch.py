"""Preparing a run whole (model located, params checked, code stored, record and spec written) and
starting it attached or detached. Nothing is recorded until every check has passed.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib._version import __version__
from mllib.code_snapshot import snapshot
from mllib.discovery import ModelInfo, find_model, split_ref
from mllib.errors import NotFoundError, UsageError
from mllib.params import ResolvedParams, resolve
from mllib.project import ENV_FILES
from mllib.registry.artifacts import model_artifact
from mllib.registry.runs import (
    RunRecord,
    create_run,
    finish_run,
    get_run,
    new_run_id,
    now,
    params_hash,
    recorded_params,
    update_run,
)
from mllib.runs.spec import (
    INPUT_MODEL_DIR,
    RunSpec,
    discard_secret_params,
    write_secret_params,
)
from mllib.runtime import RUNTIMES
from mllib.runtime.processes import create_time
from mllib.safetext import printable
from mllib.store import materialize_tree
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.datasets.progress import Progress

DEFAULT_MODEL_FILE = "model.py"


@dataclass(frozen=True)
class ModelTarget:
    """The model a command works on, in its workspace."""

    ws: Workspace
    info: ModelInfo

    @property
    def is_configured(self) -> bool:
        """Whether this is the project's model (mllib.toml `model`, or the only one when unset)."""
        configured = self.ws.project.config.model
        return configured is None or split_ref(configured)[1] in (None, self.info.class_name)

    @property
    def name(self) -> str:
        """The registry name: mllib.toml `name` for the project's model, else the class name."""
        return (self.is_configured and self.ws.project.config.name) or self.info.class_name

    @property
    def rel_file(self) -> str:
        return self.info.file.relative_to(self.ws.project.root).as_posix()


def locate_model(model: str | Path | None = None) -> ModelTarget:
    """Find the model: `model.py`, `model.py:Class`, or (None) mllib.toml's `model` or ./model.py."""
    if model is None:
        ws = Workspace.find()
        model = ws.project.config.model or DEFAULT_MODEL_FILE
        base = ws.project.root
    else:
        base = Path.cwd()
    file_part, class_name = split_ref(str(model))
    path = (base / file_part).resolve()
    if not path.exists() and not file_part.endswith(".py"):
        raise NotFoundError(
            f"No model file {file_part!r}", hint="Give the path of a model.py file."
        )
    ws = Workspace.find(path)
    configured = ws.project.config.model
    if class_name is None and configured:
        cfg_file, cfg_class = split_ref(configured)
        if (ws.project.root / cfg_file).resolve() == path:
            class_name = cfg_class
    return ModelTarget(ws, find_model(path, class_name))


def require_methods(target: ModelTarget, *names: str) -> None:
    """Refuse, before anything is recorded, an action the model class does not define.

    A class with a base from a library (not the project's files) may get methods from it: the
    worker checks the real instance then.
    """
    info = target.info
    missing = [name for name in names if name not in info.methods]
    if missing and info.complete:
        first = missing[0]
        example = "evaluate(self) -> dict" if first == "evaluate" else f"{first}(self, ...)"
        raise UsageError(
            f"{info.ref} has no {first}() method, so it cannot be {_ACTION_WORDS[first]}",
            hint=f"Add `def {example}` to the class.",
        )


_ACTION_WORDS = {"train": "trained", "evaluate": "evaluated", "predict": "asked to predict"}


def select_runtime(
    ws: Workspace,
    requested: str | None,
    remote: bool,
    agent: str | None = None,
    *,
    gpus: list[str] | None = None,
    source: RunRecord | None = None,
) -> tuple[str, str]:
    """The runtime for a run and the reason it was chosen (said once to the user).

    `source`: the training run an evaluation or prediction uses; unless a runtime is asked for,
    a local one (process, or docker while an engine answers) is used again, so the model runs
    where it was trained. `[runtime] local = "auto"` (the default) picks docker when a Docker
    engine answers (a socket connect: the docker SDK is not imported), else process. `gpus`: the
    GPUs the run is given (an agent's slot), for the note.
    """
    from mllib.agents import REMOTE_RUNTIME

    if remote or agent or requested == REMOTE_RUNTIME:
        from mllib.agents.placement import candidates

        candidates(ws, agent)  # raises when there is no agent (or no agent of that name)
        where = f"agent {agent} (--agent)" if agent else "an agent with a free slot"
        return REMOTE_RUNTIME, f"--remote: on {where}"
    if requested:
        if requested not in RUNTIMES:
            raise UsageError(
                f"Unknown runtime {requested!r}",
                hint=f"Choose one of: {', '.join([*RUNTIMES, REMOTE_RUNTIME])}.",
            )
        return requested, _with_gpu_note(requested, f"--runtime {requested}", gpus)
    if source is not None and _still_available(source.runtime):
        return source.runtime, _with_gpu_note(source.runtime, f"as training run {source.id}", gpus)
    configured = ws.project.config.runtime.local
    if configured != "auto":
        if configured not in RUNTIMES:
            raise UsageError(
                f"mllib.toml: [runtime] local = {configured!r} is not a runtime",
                hint=f"Use auto or one of: {', '.join(RUNTIMES)}.",
            )
        return configured, _with_gpu_note(configured, f"[runtime] local = {configured!r}", gpus)
    from mllib.runtime.engine import engine_host, engine_problem

    problem = engine_problem()
    if problem is None:
        return "docker", _with_gpu_note(
            "docker", f"auto: a Docker engine answers at {engine_host()}", gpus
        )
    return "process", _with_gpu_note(
        "process", f"auto: {problem}, so it runs as a local process", gpus
    )


def _still_available(runtime: str | None) -> bool:
    """Whether a training run's recorded runtime can run here now (docker: an engine answers)."""
    if runtime == "docker":
        from mllib.runtime.engine import engine_problem

        return engine_problem() is None
    return runtime in RUNTIMES


def _with_gpu_note(runtime: str, note: str, gpus: list[str] | None) -> str:
    if runtime == "docker":
        from mllib.runtime.gpus import gpu_note

        return f"{note}; {gpu_note(gpus)}"
    if gpus is not None:
        return f"{note}; GPU {','.join(gpus)} (CUDA_VISIBLE_DEVICES)"
    return note


def resolve_params(
    target: ModelTarget,
    cli_params: dict[str, Any],
    env_target: str,
    data_env: Mapping[str, str] | None = None,
) -> ResolvedParams:
    """Params as the run will see them: command line > env (datasets given to the run, the real
    environment, then the env file) > mllib.toml > default."""
    project = target.ws.project
    environ = {**project.env_values(env_target), **os.environ, **(data_env or {})}
    return resolve(
        target.info.params,
        cli_params,
        environ=environ,
        config=config_params(target),
        env_file=ENV_FILES[env_target],
    )


def config_params(target: ModelTarget) -> dict[str, Any]:
    """`[params]` of mllib.toml: checked strictly for the project's model, only matching names for others."""
    params = target.ws.project.config.params
    if target.is_configured:
        return params
    return {k: v for k, v in params.items() if k in target.info.params}


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
) -> RunRecord:
    """Check everything, then record a queued run and write its folder. Raises before writing anything.

    `host` is where it runs: "local", or for a remote run its agent (None until placed).
    `data` holds `KEY=NAME[@VERSION]` items (`--data`); with `[data]` of mllib.toml and the
    datasets of the run it continues, they are materialised read-only before the run is recorded
    (for a local run; an agent materialises its own copy).
    """
    from mllib.datasets.binding import (
        binding_env,
        materialize_uses,
        record_uses,
        resolve_bindings,
    )

    ws = target.ws
    if rerun_of is not None:  # exactly the versions the original read
        bindings = resolve_bindings(ws, inherit_from=rerun_of.id, with_config=False)
    else:
        bindings = resolve_bindings(ws, data, inherit_from=source_run.id if source_run else None)
    if rerun_of is not None:
        target, cli_params = _rerun_secrets(target, cli_params, rerun_of)
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
        print(
            f"mllib: {printable(rel)} ({size / 1e6:.0f} MB) is not part of the code snapshot; "
            "upload data as a dataset",
            file=sys.stderr,
        )
    run_id = new_run_id()
    run_dir = ws.run_dir(run_id)
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
        input_model=INPUT_MODEL_DIR if source_run else None,
    )
    try:
        spec.write(run_dir)
        write_secret_params(run_dir, secret_cli if source_run is None else {})
        if model_tree is not None:
            materialize_tree(ws.store, model_tree["sha256"], run_dir / INPUT_MODEL_DIR)
        if rerun_of is not None and rerun_of.code_hash and rerun_of.code_hash != tree.sha256:
            from mllib.runs.supervisor import CODE_DIR

            materialize_tree(ws.store, rerun_of.code_hash, run_dir / CODE_DIR)
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
            run_dir=str(run_dir),
            log_path=str(run_dir / "output.log"),
            supervisor_pid=os.getpid(),
            supervisor_ctime=create_time(os.getpid()),
            attempt=1,
            mllib_version=__version__,
        )
        with ws.registry.transaction():
            create_run(ws.registry, record, resolved.values, resolved.sources, resolved.secret)
            record_uses(ws, run_id, bindings)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and finish_run(
            ws.registry, run_id, "cancelled", None, "cancelled before it started"
        ):
            discard_secret_params(run_dir)
            raise  # Ctrl-C just after the run was recorded: it stays, cancelled
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return record


def _rerun_secrets(
    target: ModelTarget, cli_params: dict[str, Any], original: RunRecord
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
        print(
            f"mllib: the secret param {name} of run {original.id} was given on the command line "
            "and not recorded; this run takes it from the environment, the env file, mllib.toml "
            "or its default",
            file=sys.stderr,
        )
    specs = {
        name: replace(spec, declared_secret=True) if name in secret else spec
        for name, spec in target.info.params.items()
    }
    info = replace(target.info, params=specs)
    return ModelTarget(target.ws, info), {k: v for k, v in cli_params.items() if k not in secret}


def current_user() -> str:
    """The OS user (who runs and deploys, until mllib has accounts)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def spawn_supervisor(ws: Workspace, run_id: str, *, module: str = "mllib.runs") -> int:
    """Start the run's supervisor in the background (its own session); returns its pid.

    `module` is run as `python -m MODULE supervise --project ROOT RUN_ID`: mllib.runs, or an
    agent's wrapper around it (mllib_agent.runner)."""
    run_dir = ws.run_dir(run_id)
    with open(run_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "supervise",
                "--project",
                str(ws.project.root),
                run_id,
            ],
            cwd=ws.project.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    update_run(ws.registry, run_id, supervisor_pid=proc.pid, supervisor_ctime=create_time(proc.pid))
    return proc.pid


def find_source_run(
    target: ModelTarget,
    run_id: str | None,
    cli_params: dict[str, Any],
    env_target: str,
    data_env: Mapping[str, str] | None = None,
) -> RunRecord:
    """The training run to evaluate or predict with: the one given, else the newest with the same
    params (`data_env`: the paths of the datasets given, as a training run's params saw them)."""
    from mllib.registry.runs import find_trained_run

    ws = target.ws
    if run_id:
        run = get_run(ws.registry, run_id)
        if run.status != "succeeded" or not run.action.startswith("train"):
            raise UsageError(
                f"Run {run.id} is a {run.status} {run.action} run, not a successful training run",
                hint="Pick one from `mllib runs list --status succeeded`.",
            )
        _check_same_params(target, run, cli_params)
        return run
    resolved = resolve_params(target, cli_params, env_target, data_env)
    run = find_trained_run(ws.registry, target.name, params_hash(resolved.recorded))
    if run is None:
        raise NotFoundError(
            f"No successful training run of {target.name} with these params ({resolved.shown()})",
            hint=f"Train one first: `mllib train {target.rel_file}` (with the same params), or pass --run RUN_ID.",
        )
    return run


def _check_same_params(target: ModelTarget, run: RunRecord, cli_params: dict[str, Any]) -> None:
    """Params given with --run cannot change a trained model: refuse ones it was not trained with."""
    if not cli_params:
        return
    from mllib.registry.runs import get_params

    given = resolve(target.info.params, cli_params, environ={}, config={})
    recorded = get_params(target.ws.registry, run.id)
    # A secret's value is not recorded, so it cannot be compared: it is the model's own business.
    differ = [
        name
        for name in cli_params
        if name not in given.secret and recorded.get(name) != given.values[name]
    ]
    if differ:
        shown = ", ".join(f"{n}={recorded.get(n)!r}" for n in differ)
        raise UsageError(
            f"Run {run.id} was trained with {shown}; params given with --run cannot change a "
            "trained model",
            hint="Drop those params to use the run as it is, or drop --run to pick the newest "
            "training run with these params.",
        )
