"""`mllib train`, `mllib evaluate`, `mllib predict`: run a model.py's methods as recorded runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from mllib.cli import output
from mllib.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_SYSTEM, UsageError

# Model params (--learning_rate=0.01) are not known to the CLI framework: they arrive in ctx.args.
MODEL_COMMAND = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="The model file, or FILE:CLASS. Default: `model` in mllib.toml, else model.py.",
        show_default=False,
    ),
]
LocalOpt = Annotated[
    bool, typer.Option("--local", help="Run on this machine (the default); reads .env.local.")
]
RemoteOpt = Annotated[
    bool, typer.Option("--remote", help="Run on an agent host; reads .env.remote.")
]
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime", help="Where a local run executes: process or docker.", show_default=False
    ),
]
AgentOpt = Annotated[
    str | None,
    typer.Option("--agent", help="Run on this agent (implies --remote).", show_default=False),
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Start in the background and print the run id.")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="A param as NAME=VALUE (same as --NAME=VALUE).", show_default=False
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


def run_option(what: str) -> Any:
    """`--run RUN_ID` for commands that use a trained run (`what` says which run it is)."""
    return Annotated[
        str | None,
        typer.Option(
            "--run",
            help=f"{what} Default: the newest successful training run with the same params.",
            show_default=False,
        ),
    ]


HelpOpt = Annotated[
    bool, typer.Option("--help", "-h", help="Show this help and the model's params.")
]


def _target_and_params(ctx: typer.Context, model: str | None, param: list[str] | None, help_: bool):
    from mllib.params import param_table, parse_cli_params
    from mllib.runs.launch import locate_model

    if help_:
        output.out().print(ctx.get_help(), markup=False, highlight=False)
        try:
            target = locate_model(model)
        except Exception as exc:  # no model here: the command help alone is still useful
            output.out().print(
                f"\n(No model params shown: {str(exc).splitlines()[0]})", markup=False
            )
        else:
            output.out().print(
                f"\nParams of {target.info.ref}:\n{param_table(target.info.params)}", markup=False
            )
            for name, option in _shadowed_params(ctx, target.info.params).items():
                output.out().print(
                    f"  ({option} is mllib's own option: set the param `{name}` with "
                    f"-p {name}=VALUE)",
                    markup=False,
                )
        raise typer.Exit(0)
    target = locate_model(model)
    for name, option in _shadowed_params(ctx, target.info.params).items():
        source = ctx.get_parameter_source(_option_dest(ctx, option))
        if source is not None and source.name == "COMMANDLINE":
            output.err().print(
                f"Note: {option} is mllib's own option, not the model's param `{name}` (which "
                f"keeps its value). To set the param, write -p {name}=VALUE.",
                markup=False,
            )
    extra = list(ctx.args)
    for item in param or []:
        extra += ["--param", item]
    params = parse_cli_params(extra, target.info.params)
    _note_secrets(target.info.params, params)
    return target, params


def _note_secrets(specs, params) -> None:
    """Secret params given on the command line work (and are not recorded), but the shell
    keeps them in its history: say where they belong."""
    for name in params:
        spec = specs.get(name)
        if spec is None or not spec.secret:
            continue
        where = (
            f"put {spec.env}=... in .env.local (or export it)"
            if spec.env
            else 'declare it with mllib.Param(..., env="NAME") and put NAME=... in .env.local'
        )
        output.err().print(
            f"Note: `{name}` is a secret param: mllib does not record its value, but your "
            f"shell's history keeps what you type. Next time {where}.",
            markup=False,
        )


def _shadowed_params(ctx: typer.Context, params) -> dict[str, str]:
    """Model params whose --NAME is one of this command's own options: param name -> option."""
    options = {
        opt.lstrip("-").replace("-", "_"): opt
        for p in ctx.command.params
        for opt in p.opts
        if opt.startswith("--")
    }
    return {name: options[name] for name in params if name in options}


def _option_dest(ctx: typer.Context, option: str) -> str:
    return next(p.name for p in ctx.command.params if option in p.opts)


def _where(local: bool, remote: bool) -> bool:
    if local and remote:
        raise UsageError("Choose one of --local and --remote")
    return remote


def _announce(record) -> None:
    from rich.markup import escape

    output.err().print(
        f"[bold]Run {record.id}[/] · {escape(record.model)} · {record.action} · "
        f"{record.runtime} runtime ({escape(record.runtime_note or '')})"
    )


@contextmanager
def _data_progress() -> Iterator[tuple[Any, Callable[[Any], None]]]:
    """Progress for materialising datasets, ended before the run's own output starts."""
    from mllib.cli.progress import TransferProgress

    with TransferProgress() as progress:

        def prepared(record) -> None:
            progress.close()
            _announce(record)

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


def _finish(record, detach: bool) -> None:
    """Print the run's outcome and exit with the code that matches it."""
    from mllib.cli.runs import summary_lines

    console = output.err()
    if detach or not record.finished:
        console.print(f"Started run [bold]{record.id}[/] in the background.")
        console.print(f"  Follow it:  mllib runs logs {record.id} --follow")
        console.print(f"  Stop it:    mllib runs cancel {record.id}")
        print(record.id)
        return
    for line in summary_lines(record):
        console.print(line)
    if record.status == "succeeded":
        return
    if record.status == "cancelled":
        raise typer.Exit(EXIT_CANCELLED)
    raise typer.Exit(EXIT_SYSTEM if record.failure_class == "system_error" else EXIT_FAILED)


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
        typer.Option(
            "--seed",
            help="Seed for random, numpy and torch (default: mllib.toml `seed`, else 0).",
            show_default=False,
        ),
    ] = None,
    data: DataOpt = None,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Train a model and record the run (params, metrics, model, logs).

    Params go after the model file as --NAME=VALUE, e.g. `mllib train model.py --learning_rate=0.01`.
    """
    from mllib.runs import api

    target, params = _target_and_params(ctx, model, param, help_)
    with _data_progress() as (progress, prepared):
        record = api.train(
            params=params,
            evaluate=evaluate,
            runtime=runtime,
            remote=_where(local, remote),
            agent=agent,
            detach=detach,
            seed=seed,
            data=data,
            target=target,
            on_prepared=prepared,
            on_interrupt=ask_detach_or_cancel,
            progress=progress,
        )
    _finish(record, detach)


def evaluate(
    ctx: typer.Context,
    model: ModelArg = None,
    run: run_option("The training run to evaluate.") = None,
    local: LocalOpt = False,
    remote: RemoteOpt = False,
    agent: AgentOpt = None,
    runtime: RuntimeOpt = None,
    detach: DetachOpt = False,
    data: DataOpt = None,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Evaluate a trained model; its evaluate() result is recorded as a new run."""
    from mllib.runs import api

    target, params = _target_and_params(ctx, model, param, help_)
    with _data_progress() as (progress, prepared):
        record = api.evaluate(
            run=run,
            params=params,
            runtime=runtime,
            remote=_where(local, remote),
            agent=agent,
            detach=detach,
            data=data,
            target=target,
            on_prepared=prepared,
            on_interrupt=ask_detach_or_cancel,
            progress=progress,
        )
    _finish(record, detach)


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
    runtime: RuntimeOpt = None,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Predict with a trained model and print the result as JSON on stdout."""
    from mllib.encoding import to_json_bytes
    from mllib.runs import api

    target, params = _target_and_params(ctx, model, param, help_)
    request = _read_request(input_)
    result = api.predict(request, run=run, params=params, runtime=runtime, target=target)
    sys.stdout.buffer.write(to_json_bytes(result) + b"\n")
    sys.stdout.flush()


def _read_request(text: str | None) -> Any:
    from mllib.encoding import from_json

    if text is None:
        raise UsageError(
            "predict needs --input",
            hint="""For example: --input '{"x": 1}' or --input @request.json""",
        )
    source = "--input"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as handle:
                text, source = handle.read(), path
        except OSError as exc:
            raise UsageError(f"Cannot read the request file {path}: {exc.strerror}") from None
    try:
        return from_json(text)
    except ValueError as exc:
        raise UsageError(f"The request from {source} is not valid JSON: {exc}") from None
