"""`mllib train`, `mllib evaluate`, `mllib predict`: run a model.py's methods as recorded runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mllib.cli.model_args import (
    BestOpt,
    HelpOpt,
    ModelArg,
    ParamOpt,
    VersionOpt,
    chosen_target,
    run_option,
)
from mllib.cli.numbers import number_option
from mllib.cli.run_output import announce, finish, stderr_echo
from mllib.errors import UsageError

if TYPE_CHECKING:
    from mllib.config import Config
from mllib.ranges import GPUS, PRIORITY, SEED

LocalOpt = Annotated[
    bool, typer.Option("--local", help="Run on this machine (the default); reads .env.local.")
]
RemoteOpt = Annotated[
    bool, typer.Option("--remote", help="Run on an agent host; reads .env.remote.")
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime", help="Where a local run executes: process, venv or docker.", show_default=False
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option("--agent", help="Run on this agent (implies --remote).", show_default=False),
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Start in the background and print the run id.")
]
FailUnderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-under",
        help="Exit 1 when evaluate()'s METRIC is under NUMBER (or missing), as METRIC=NUMBER: "
        "`accuracy=0.9`. Repeatable.",
        show_default=False,
    ),
]
EveryOpt = Annotated[
    str | None,
    typer.Option(
        "--every",
        metavar="PERIOD",
        help="Do not evaluate now: schedule it every PERIOD (30m, 6h, 1d, 1w). Each time, the "
        "version the name means then (NAME@prod: the one deployed in prod) on the newest version "
        "of each dataset named without @VERSION. `mllib schedules` lists and runs them.",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the run as JSON when it ends (as `mllib runs show --json`); the run's own "
        "output goes to stderr.",
    ),
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        help="A dataset for the run as KEY=NAME[@VERSION]: `train=mnist@3` sets TRAIN_DATA to its "
        "read-only path (an upper-case KEY is the variable itself). Repeatable.",
        show_default=False,
    ),
]


def where(local: bool, remote: bool) -> bool:
    """--local/--remote: whether to run remotely (both given is a usage error)."""
    if local and remote:
        raise UsageError("Choose one of --local and --remote")
    return remote


@contextmanager
def _data_progress() -> Iterator[tuple[Any, Callable[[Any], None]]]:
    """Progress for materialising datasets, ended before the run's own output starts."""
    from mllib.cli.progress import TransferProgress

    with TransferProgress() as progress:

        def prepared(record) -> None:
            progress.close()
            announce(record)

        yield progress, prepared


def ask_detach_or_cancel() -> str:
    """Ctrl-C during a remote run: the run can go on without this terminal, so ask."""
    if not sys.stdin.isatty():
        return "cancel"
    try:
        answer = typer.prompt(
            "\nThe run goes on on its agent. [d]etach (keep it running) or [c]ancel it?",
            default="d",
            err=True,
        )
    except (EOFError, typer.Abort):
        return "detach"
    return "cancel" if answer.strip().lower().startswith("c") else "detach"


def _run(
    launch: Callable[..., Any],
    ctx: typer.Context,
    model: str | None,
    param: list[str] | None,
    help_: bool,
    remote: bool,
    detach: bool,
    fail_under: list[str] | None = None,
    **options: Any,
) -> None:
    """Start a run with `launch` (api.train, api.evaluate), showing its progress, and finish."""
    from mllib.runs.gates import parse_gates
    from mllib.runs.model_choice import ModelChoice
    from mllib.runs.target import workspace_of

    choice = ModelChoice(version=options.get("version"), best=options.get("best"))
    target, params = chosen_target(ctx, model, param, help_, choice)
    gates = parse_gates(fail_under)
    if gates and detach:
        raise UsageError(
            "--fail-under checks the run's evaluation when it ends: it cannot go with --detach"
        )
    json_ = options.pop("json_", False)
    options |= {"params": params, "remote": remote, "detach": detach, "target": target}
    if json_:  # stdout holds the answer alone: the run's own output goes to stderr
        options["echo"] = stderr_echo
    with _data_progress() as (progress, prepared):
        record = launch(
            **options, on_prepared=prepared, on_interrupt=ask_detach_or_cancel, progress=progress
        )
    finish(workspace_of(target), record, detach, gates, json_=json_)


def train(
    ctx: typer.Context,
    model: ModelArg = None,
    local: LocalOpt = False,
    remote: RemoteOpt = False,
    agent: AgentOpt = None,
    runtime: RuntimeOpt = None,
    evaluate: Annotated[
        bool, typer.Option("--evaluate", help="Evaluate in the same run after training.")
    ] = False,
    detach: DetachOpt = False,
    seed: Annotated[
        int | None,
        number_option(
            "--seed",
            SEED,
            help="Seed for random, numpy and torch (default: mllib.toml `seed`, else 0).",
            show_default=False,
        ),
    ] = None,
    data: DataOpt = None,
    from_study: Annotated[
        str | None,
        typer.Option(
            "--from-study",
            help="Train with the best params of this study (`mllib tune`); params given here win.",
            show_default=False,
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        number_option(
            "--gpus", GPUS, help="GPUs the run asks for on a team server (1).", show_default=False
        ),
    ] = None,
    priority: Annotated[
        int | None,
        number_option(
            "--priority",
            PRIORITY,
            help="Among your runs on a team server, higher goes first (0).",
            show_default=False,
        ),
    ] = None,
    fail_under: FailUnderOpt = None,
    json_: JsonOpt = False,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Train a model and record the run (params, metrics, model, logs).

    Params go after the model file as --NAME=VALUE, e.g. `mllib train model.py --learning_rate=0.01`.
    """
    from mllib.runs import api

    if fail_under and not evaluate:
        raise UsageError(
            "--fail-under gates evaluate()'s metrics: add --evaluate",
            hint="For example: mllib train model.py --evaluate --fail-under accuracy=0.9",
        )
    launch = api.train if from_study is None else _with_study_params(api.train, from_study)
    options = {"evaluate": evaluate, "runtime": runtime, "agent": agent, "seed": seed, "data": data}
    options |= {"gpus": gpus, "priority": priority, "json_": json_}
    _run(launch, ctx, model, param, help_, where(local, remote), detach, fail_under, **options)


def _with_study_params(launch: Callable[..., Any], study: str) -> Callable[..., Any]:
    """`launch` with the best params of `study` under the params given on the command line."""

    def with_params(**options: Any) -> Any:
        from mllib.tuning.api import best_params

        target = options["target"]
        options["params"] = {
            **best_params(target.ws, study, model=target.name),
            **options["params"],
        }
        return launch(**options)

    return with_params


def evaluate(
    ctx: typer.Context,
    model: ModelArg = None,
    run: run_option("The training run to evaluate.") = None,
    version: VersionOpt = None,
    best: BestOpt = None,
    local: LocalOpt = False,
    remote: RemoteOpt = False,
    agent: AgentOpt = None,
    runtime: RuntimeOpt = None,
    detach: DetachOpt = False,
    data: DataOpt = None,
    fail_under: FailUnderOpt = None,
    every: EveryOpt = None,
    json_: JsonOpt = False,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Evaluate a trained model version; its evaluate() result is recorded as a new run.

    With `--every`, schedule it instead: `mllib evaluate --model iris@prod --data eval=reviews
    --fail-under accuracy=0.9 --every 1d`."""
    from mllib.runs import api

    if every is not None and not help_:
        refused = [n for n, v in (("--run", run), ("--detach", detach), ("--agent", agent)) if v]
        if refused or remote:
            raise UsageError(
                f"--every schedules the evaluation of a named version: {(refused or ['--remote'])[0]}"
                " cannot go with it",
                hint="For example: mllib evaluate --model iris@prod --data eval=reviews --every 1d",
            )
        options = {"best": best, "data": data, "fail_under": fail_under, "runtime": runtime}
        options["local"] = local
        _schedule(ctx, model, param, version, every, **options)
        return
    options = {"run": run, "version": version, "best": best, "json_": json_}
    options |= {"runtime": runtime, "agent": agent, "data": data}
    _run(
        api.evaluate, ctx, model, param, help_, where(local, remote), detach, fail_under, **options
    )


def _schedule(
    ctx: typer.Context,
    model: str | None,
    param: list[str] | None,
    version: str | None,
    every: str,
    **options: Any,
) -> None:
    """`mllib evaluate ... --every PERIOD`: store the evaluation as a schedule."""
    from mllib.cli.schedules import schedule_evaluation
    from mllib.runs.model_choice import ModelChoice, params_refused

    choice = ModelChoice(version=version, best=options["best"])
    target, params = chosen_target(ctx, model, param, False, choice)
    if params:
        raise params_refused(sorted(params))
    ref = version or (target.name if target is not None else "")
    param_env = target.param_env if target is not None else []
    schedule_evaluation(ref, every, param_env=param_env, **options)


def predict(
    ctx: typer.Context,
    model: ModelArg = None,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The request as JSON, @FILE for a JSON file, or - for stdin.",
            show_default=False,
        ),
    ] = None,
    run: run_option("The training run whose model predicts.") = None,
    version: VersionOpt = None,
    best: BestOpt = None,
    runtime: RuntimeOpt = None,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Predict with a trained model version and print the result as JSON on stdout."""
    from mllib.encoding import to_json_bytes
    from mllib.runs import api
    from mllib.runs.model_choice import ModelChoice
    from mllib.runs.target import workspace_of

    choice = ModelChoice(version=version, best=best, run=run)
    target, params = chosen_target(ctx, model, param, help_, choice)
    request = _read_request(input_, workspace_of(target).project.config)
    result = api.predict(
        request,
        run=run,
        version=version,
        best=best,
        params=params,
        runtime=runtime,
        target=target,
    )
    sys.stdout.buffer.write(to_json_bytes(result) + b"\n")
    sys.stdout.flush()


def _read_request(text: str | None, config: Config) -> Any:
    """The request of `mllib predict`, read up to what a server of this project would take."""
    from mllib.config import read_table
    from mllib.encoding import from_json
    from mllib.request_input import HINT, read_request
    from mllib.serving.control.settings import ServeSettings

    if text is None:
        raise UsageError("predict needs --input", hint=HINT)
    serve = read_table(ServeSettings, config, "serve", non_negative=True)
    data, source = read_request(text, max_bytes=int(serve.max_body_mb * 1e6))
    try:
        return from_json(data)
    except ValueError as exc:
        raise UsageError(f"The request from {source} is not valid JSON: {exc}") from None
