"""The arguments of commands that take a model.py (train, evaluate, predict, serve): the model,
its params (from the command line, where they are not the CLI framework's own options) and help
that lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mllib import terminal
from mllib.cli import completion, output
from mllib.errors import UsageError

if TYPE_CHECKING:
    from mllib.runs.model_choice import ModelChoice
    from mllib.runs.target import ModelTarget

# Model params (--learning_rate=0.01) are not known to the CLI framework: they arrive in ctx.args.
MODEL_COMMAND = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="The model file, or FILE:CLASS. Default: `model` in mllib.toml, else model.py.",
        show_default=False,
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="A param as NAME=VALUE (same as --NAME=VALUE).", show_default=False
    ),
]


def run_option(what: str) -> Any:
    """`--run RUN_ID` for commands that use a trained run (`what` says which run it is)."""
    return Annotated[
        str | None,
        typer.Option(
            "--run",
            help=f"{what} Default: the newest version of the model (trained with the params "
            "given, when there are some).",
            show_default=False,
            autocompletion=completion.run_ids,
        ),
    ]


VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="NAME[:VERSION]",
        help="A trained version: NAME (its newest), NAME:VERSION or NAME@ALIAS. No model file is "
        "needed.",
        show_default=False,
        autocompletion=completion.model_refs,
    ),
]
BestOpt = Annotated[
    str | None,
    typer.Option(
        "--best",
        metavar="METRIC",
        help="The version whose latest evaluation has the best METRIC (the lowest for loss-like "
        "names, else the highest), of --model NAME or the model file's model.",
        show_default=False,
    ),
]


HelpOpt = Annotated[
    bool, typer.Option("--help", "-h", help="Show this help and the model's params.")
]


def target_and_params(ctx: typer.Context, model: str | None, param: list[str] | None, help_: bool):
    """The model a command names and its params from the command line; `--help` prints the
    command's help with the model's params, and exits."""
    from mllib.params import param_table, parse_cli_params
    from mllib.runs.target import locate_model

    model, args = model_and_args(ctx, model)
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
            terminal.note(
                f"Note: {option} is mllib's own option, not the model's param `{name}` (which "
                f"keeps its value). To set the param, write -p {name}=VALUE."
            )
    extra = list(args)
    for item in param or []:
        extra += ["--param", item]
    own = [opt for p in ctx.command.params for opt in p.opts if opt.startswith("--")]
    params = parse_cli_params(extra, target.info.params, options=own)
    _note_secrets(target.info.params, params)
    return target, params


def chosen_target(
    ctx: typer.Context,
    model: str | None,
    param: list[str] | None,
    help_: bool,
    choice: ModelChoice,
) -> tuple[ModelTarget | None, dict[str, Any]]:
    """`target_and_params` for a command that may name a trained version instead of a model
    file (`--model`): then there is no model file to read, and no params to give."""
    file, args = model_and_args(ctx, model)
    if help_ or file is not None or not choice.names_model:
        return target_and_params(ctx, model, param, help_)
    from mllib.runs.model_choice import params_refused

    given = [a for a in args if a.startswith("-")] + [f"-p {p}" for p in param or []]
    if given:
        raise params_refused(given)
    if args:
        raise UsageError(f"Unexpected argument {args[0]!r}")
    return None, {}


def model_and_args(ctx: typer.Context, model: str | None) -> tuple[str | None, list[str]]:
    """The model file given, and the model's params from the command line. A param written
    first (`mllib train --epochs=3`, the model from mllib.toml) reaches the CLI framework as the
    model argument: it is a param."""
    if model is not None and model.startswith("-"):
        return None, [model, *ctx.args]
    return model, list(ctx.args)


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
        terminal.note(
            f"Note: `{name}` is a secret param: mllib does not record its value, but your "
            f"shell's history keeps what you type. Next time {where}."
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
