"""The `mllib` command: every command group joined in one place."""

from __future__ import annotations

import typer

from mllib.cli import agents, data, deploy, keys, loadtest, model_commands, runs, serve
from mllib.cli import doctor as doctor_cmd
from mllib.cli import init as init_cmd
from mllib.cli import runtime as runtime_cmd
from mllib.cli.model_args import MODEL_COMMAND

app = typer.Typer(
    name="mllib",
    help="Train, evaluate and serve a model.py: locally, in Docker, or on your GPU hosts.\n\n"
    "Both spellings work: `mllib train model.py --lr=0.01` and `mllib model.py --train --lr=0.01`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        from mllib._version import __version__

        print(f"mllib {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", help="Print mllib's version.", callback=_version, is_eager=True
    ),
) -> None:
    """Train, evaluate and serve a model.py: locally, in Docker, or on your GPU hosts."""


app.command(context_settings=MODEL_COMMAND)(model_commands.train)
app.command(context_settings=MODEL_COMMAND)(model_commands.evaluate)
app.command(context_settings=MODEL_COMMAND)(model_commands.predict)
app.command()(init_cmd.init)
app.add_typer(runs.app, name="runs")
app.command(context_settings=MODEL_COMMAND)(serve.serve)
app.add_typer(deploy.app, name="deploy")
app.add_typer(keys.app, name="keys")
app.command()(loadtest.loadtest)
app.add_typer(agents.app, name="agents")
app.add_typer(data.app, name="data")
app.add_typer(runtime_cmd.app, name="runtime")
app.command()(doctor_cmd.doctor)


def command_names() -> set[str]:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}
