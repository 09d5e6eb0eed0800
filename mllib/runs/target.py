"""The model a command works on: found from a path or mllib.toml, its params resolved and checked,
and the training run it evaluates or predicts with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.discovery import ModelInfo, find_model, split_ref
from mllib.errors import NotFoundError, UsageError
from mllib.params import ResolvedParams, resolve
from mllib.project import ENV_FILES
from mllib.registry.runs import RunRecord, get_run, params_hash
from mllib.workspace import Workspace

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

    @property
    def param_env(self) -> list[str]:
        """The variables its params read with `env=`."""
        return sorted({spec.env for spec in self.info.params.values() if spec.env})


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
    if info.litapi and (missing or "predict" in names):
        what = (
            f"with no {missing[0]}() method, so it cannot be {_ACTION_WORDS[missing[0]]}"
            if missing
            else "served as it is: `mllib predict` calls a trained model in a run"
        )
        raise UsageError(
            f"{info.ref} is a LitServe API {what}",
            hint=f"Serve it: `mllib serve {info.ref}` (and `mllib deploy {info.ref} --env "
            "staging`), then POST requests to /predict.",
        )
    if missing and info.complete:
        first = missing[0]
        example = "evaluate(self) -> dict" if first == "evaluate" else f"{first}(self, ...)"
        raise UsageError(
            f"{info.ref} has no {first}() method, so it cannot be {_ACTION_WORDS[first]}",
            hint=f"Add `def {example}` to the class.",
        )


def require_servable(target: ModelTarget) -> None:
    """Refuse to serve a class that is neither a LitServe API with its own predict() nor a
    model class with predict()."""
    info = target.info
    if info.litapi and "predict" not in info.methods:
        raise UsageError(
            f"{info.ref} is a LitServe API without a predict() method, so it cannot be served",
            hint="Add `def predict(self, x)` to the class (setup() loads what it needs).",
        )
    if "predict" not in info.methods and info.complete:
        raise UsageError(
            f"{info.ref} is neither a LitServe API nor a model class with predict(), so it "
            "cannot be served",
            hint="Serve a subclass of litserve.LitAPI, or a model class with "
            "`def predict(self, request)` trained with `mllib train`.",
        )


_ACTION_WORDS = {"train": "trained", "evaluate": "evaluated", "predict": "asked to predict"}


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


def given_run(target: ModelTarget, run_id: str, cli_params: Mapping[str, Any]) -> RunRecord:
    """The training run `--run` names, refusing params it was not trained with."""
    run = check_trained(get_run(target.ws.registry, run_id))
    _check_same_params(target, run, dict(cli_params))
    return run


PACKAGE = "package"  # the action of a run recording a LitServe API's code as a model version


def check_servable(run: RunRecord) -> RunRecord:
    """`run`, when it made a model version a server can load: a successful training run, or the
    code of a LitServe API recorded as a version (see mllib.serving.control.package)."""
    return run if run.action == PACKAGE and run.status == "succeeded" else check_trained(run)


def check_trained(run: RunRecord) -> RunRecord:
    """`run`, when it is a successful training run (one that made a model); a usage error if not."""
    if run.status != "succeeded" or not run.action.startswith("train"):
        raise UsageError(
            f"Run {run.id} is a {run.status} {run.action} run, not a successful training run",
            hint="Pick one from `mllib runs list --status succeeded`.",
        )
    return run


def newest_with_params(
    target: ModelTarget,
    cli_params: Mapping[str, Any],
    env_target: str,
    data_env: Mapping[str, str] | None = None,
) -> RunRecord:
    """The newest successful training run of `target` with the params it would resolve now
    (`data_env`: the paths of the datasets given, as a training run's params saw them)."""
    from mllib.registry.runs import find_trained_run

    resolved = resolve_params(target, dict(cli_params), env_target, data_env)
    run = find_trained_run(target.ws.registry, target.name, params_hash(resolved.recorded))
    if run is None:
        raise NotFoundError(
            f"No successful training run of {target.name} with these params ({resolved.shown()})",
            hint=f"Train one first: `mllib train {target.rel_file}` (with the same params), or "
            "pick a version with --model NAME[:VERSION] (`mllib models list`).",
        )
    return run


def workspace_of(target: ModelTarget | None) -> Workspace:
    """`target`'s workspace; without one (a version named by --model), the project here."""
    return target.ws if target is not None else Workspace.find()


def target_of_run(ws: Workspace, run: RunRecord) -> ModelTarget:
    """The model class a training run trained, read again from the project's files (an
    evaluation runs the project's code as it is now, with the run's trained model)."""
    path = ws.project.root / (run.model_file or DEFAULT_MODEL_FILE)
    return ModelTarget(ws, find_model(path, run.model_class or run.model))


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
