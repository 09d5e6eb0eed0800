"""The Python API of runs; each CLI command is a thin layer over one of these functions.

>>> run = mllib.train("model.py", {"learning_rate": 0.01}, evaluate=True)  # doctest: +SKIP
>>> from mllib.runs import views; from mllib.workspace import Workspace  # doctest: +SKIP
>>> run.status, views.show(Workspace.find(), run.id)["eval_metrics"]  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.errors import UsageError
from mllib.registry.runs import RunRecord, get_params, get_run
from mllib.runs.backend import CancelFlag, backend_for
from mllib.runs.model_choice import ModelChoice, choose
from mllib.runs.prepare import prepare_run
from mllib.runs.runtime_choice import select_runtime
from mllib.runs.target import (
    PACKAGE,
    ModelTarget,
    locate_model,
    require_methods,
    target_of_run,
    workspace_of,
)
from mllib.terminal import Notify, notice
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.datasets.progress import Progress

Echo = Callable[[bytes], None]


def _stdout_echo(chunk: bytes) -> None:
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


def start(
    target: ModelTarget,
    record: RunRecord,
    *,
    detach: bool,
    echo: Echo | None,
    on_interrupt: Callable[[], str] | None = None,
    on_prepared: Callable[[RunRecord], None] | None = None,
    agent: str | None = None,
    flag: CancelFlag | None = None,
    queue: Mapping[str, int] | None = None,
) -> RunRecord:
    """Hand a recorded run to its backend: run it to its end here, or in a background supervisor
    (`detach`); `agent` pins it to that agent; `flag.request()` stops it; `queue`: a team
    server's `gpus` and `priority` (see Backend.submit)."""
    return backend_for(record).submit(
        target.ws,
        record,
        detach=detach,
        echo=echo,
        on_interrupt=on_interrupt,
        on_prepared=on_prepared,
        pin=agent,
        flag=flag,
        queue=queue,
    )


@dataclass(frozen=True)
class _Launch:
    """How train() and evaluate() record a run and start it: where, and who hears of it."""

    runtime: str | None
    remote: bool
    agent: str | None
    detach: bool
    echo: Echo | None
    on_prepared: Callable[[RunRecord], None] | None
    on_interrupt: Callable[[], str] | None
    flag: CancelFlag | None = None
    queue: Mapping[str, int] | None = None

    @property
    def env_target(self) -> str:
        return "remote" if self.remote else "local"

    def __call__(
        self, target: ModelTarget, actions: list[str], params: dict[str, Any], **prepare: Any
    ) -> RunRecord:
        name, note = select_runtime(
            target.ws, self.runtime, self.remote, self.agent, source=prepare.get("source_run")
        )
        record = prepare_run(
            target,
            actions,
            params,
            runtime=name,
            runtime_note=note,
            env_target=self.env_target,
            host=None if self.remote else "local",
            **prepare,
        )
        return start(
            target,
            record,
            detach=self.detach,
            echo=self.echo,
            on_interrupt=self.on_interrupt,
            on_prepared=self.on_prepared,
            agent=self.agent,
            flag=self.flag,
            queue=self.queue,
        )


def train(
    model: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    evaluate: bool = False,
    runtime: str | None = None,
    remote: bool = False,
    agent: str | None = None,
    detach: bool = False,
    seed: int | None = None,
    data: Sequence[str] | None = None,
    echo: Echo | None = _stdout_echo,
    target: ModelTarget | None = None,
    on_prepared: Callable[[RunRecord], None] | None = None,
    progress: Progress | None = None,
    on_interrupt: Callable[[], str] | None = None,
    flag: CancelFlag | None = None,
    gpus: int | None = None,
    priority: int | None = None,
) -> RunRecord:
    """Train `model` (a model.py path, optionally `path:Class`) and record the run; returns its record.

    `remote=True` runs it on an agent with a free slot, `agent=NAME` on that agent.
    `data`: datasets as `KEY=NAME[@VERSION]` (`train=mnist@3` sets TRAIN_DATA to its read-only path).
    `flag`: a `mllib.runs.backend.CancelFlag` whose `request()`, from another thread, stops the
    run as Ctrl-C would (a run supervised here, not detached).
    `gpus`, `priority`: what a run queued on a team server asks for (1 GPU, priority 0).
    """
    target = target or locate_model(model)
    actions = ["train", "evaluate"] if evaluate else ["train"]
    require_methods(target, *actions)
    queue = {k: v for k, v in (("gpus", gpus), ("priority", priority)) if v is not None}
    launch = _Launch(
        runtime,
        remote or agent is not None,
        agent,
        detach,
        echo,
        on_prepared,
        on_interrupt,
        flag,
        queue,
    )
    return launch(target, actions, dict(params or {}), seed=seed, data=data, progress=progress)


def evaluate(
    model: str | Path | None = None,
    run: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    best: str | None = None,
    runtime: str | None = None,
    remote: bool = False,
    agent: str | None = None,
    detach: bool = False,
    data: Sequence[str] | None = None,
    echo: Echo | None = _stdout_echo,
    target: ModelTarget | None = None,
    on_prepared: Callable[[RunRecord], None] | None = None,
    progress: Progress | None = None,
    on_interrupt: Callable[[], str] | None = None,
    notify: Notify | None = notice,
) -> RunRecord:
    """Evaluate a trained model version as a new run: `run` (a training run's id), `version`
    (`NAME`, `NAME:VERSION`, `NAME@ALIAS`: no model file needed), the version with the `best`
    value of a metric, else the newest version of `model` (trained with `params`, when given).

    The evaluation runs the project's code as it is now with the version's trained model, and
    gets its training run's datasets, then `[data]` and `data` on top. `notify` hears which
    version it is.
    """
    from mllib.datasets.binding import binding_env, resolve_bindings

    choice = ModelChoice(version=version, best=best, run=run)
    target = target or _target(model, choice)
    if target is not None:
        require_methods(target, "evaluate")
    launch = _Launch(
        runtime, remote or agent is not None, agent, detach, echo, on_prepared, on_interrupt
    )
    ws = workspace_of(target)
    cli_params = dict(params or {})
    data_env = binding_env(ws, resolve_bindings(ws, data)) if cli_params and not run else None
    chosen = choose(
        ws,
        choice,
        target,
        cli_params,
        env_target=launch.env_target,
        data_env=data_env,
        notify=notify,
    )
    if target is None:
        target = target_of_run(ws, chosen.run)
        require_methods(target, "evaluate")
    source = chosen.run
    return launch(
        target, ["evaluate"], {}, seed=source.seed, source_run=source, data=data, progress=progress
    )


def predict(
    request: Any,
    model: str | Path | None = None,
    run: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    version: str | None = None,
    best: str | None = None,
    runtime: str | None = None,
    target: ModelTarget | None = None,
    notify: Notify | None = notice,
) -> Any:
    """Call a trained model version's predict(request) in a worker and return the JSON-ready
    result. The version: `run`, `version` (`NAME`, `NAME:VERSION`, `NAME@ALIAS`: no model file
    needed) or `best` (a metric), else the newest version of `model` (trained with `params`,
    when given); `notify` hears which."""
    from mllib.runs.predict import predict_with_run

    choice = ModelChoice(version=version, best=best, run=run)
    target = target or _target(model, choice)
    if target is not None:
        require_methods(target, "predict")
    ws = workspace_of(target)
    chosen = choose(ws, choice, target, dict(params or {}), notify=notify)
    if chosen.run.action == PACKAGE:
        raise UsageError(
            f"{chosen.label} is a LitServe API's code, not a trained model",
            hint=f"Serve it: `mllib serve --model {chosen.model}:{chosen.version}`, then POST "
            "requests to /predict.",
        )
    name, _ = select_runtime(ws, runtime, False, source=chosen.run)
    return predict_with_run(ws, chosen.run, request, runtime=name)


def _target(model: str | Path | None, choice: ModelChoice) -> ModelTarget | None:
    """The model file a command reads: the one given, else (unless `choice` names the model
    version itself) mllib.toml's `model` or ./model.py."""
    if model is None and choice.names_model:
        return None
    return locate_model(model)


def rerun(
    run_id: str,
    *,
    detach: bool = False,
    echo: Echo | None = _stdout_echo,
    start_dir: str | Path | None = None,
    on_prepared: Callable[[RunRecord], None] | None = None,
    ws: Workspace | None = None,
) -> RunRecord:
    """Run a recorded run again with its recorded code, params, seed and runtime; returns the new
    run. The run is looked up in `ws`, else the project at `start_dir` (default: here)."""
    from mllib.discovery import ModelInfo
    from mllib.params import ParamSpec, type_name_of

    ws = ws or Workspace.find(start_dir)
    original = get_run(ws.registry, run_id)
    if original.action == PACKAGE:
        raise UsageError(
            f"Run {original.id} recorded a LitServe API's code as a version: nothing ran",
            hint=f"Serve it: `mllib serve --model {original.model}:VERSION` (`mllib models show "
            f"{original.model}` lists them).",
        )
    values = get_params(ws.registry, original.id)
    # The recorded run, not today's source, says what to run: the code may have changed since.
    specs = {k: ParamSpec(k, v, type_name_of(v)) for k, v in values.items()}
    info = ModelInfo(
        ws.project.root / (original.model_file or "model.py"),
        original.model_class or original.model,
        specs,
    )
    target = ModelTarget(ws, info)
    actions = original.action.split("+")
    source = None
    if "train" not in actions and original.source_run_id:
        source = get_run(ws.registry, original.source_run_id)
    record = prepare_run(
        target,
        actions,
        values if source is None else {},
        runtime=original.runtime or "process",
        runtime_note=f"as in run {original.id}",
        env_target=original.env_target or "local",
        seed=original.seed,
        source_run=source,
        rerun_of=original,
        host="local" if original.host in (None, "local") else None,
    )
    return start(target, record, detach=detach, echo=echo, on_prepared=on_prepared)
