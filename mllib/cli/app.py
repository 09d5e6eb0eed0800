"""The `mllib` command: every command group joined in one place, with the conventions every
command shares (README, "Conventions"): `-h` beside `--help`, `-V` beside `--version`, `-q` and
`-v` on the root, shell completion, and every option readable from an `MLLIB_...` variable."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from mllib.cli import (
    account,
    agents,
    dashboard,
    data,
    deploy,
    doctor,
    keys,
    loadtest,
    model_commands,
    models,
    monitoring,
    ray,
    runs,
    schedules,
    serve,
    server,
    tune,
)
from mllib.cli import init as init_cmd
from mllib.cli import queue as queue_cmd
from mllib.cli import runtime as runtime_cmd
from mllib.cli.model_args import MODEL_COMMAND
from mllib.errors import UsageError

if TYPE_CHECKING:
    from typer.core import TyperGroup

# Option NAME of command `a b` reads MLLIB_A_B_NAME when not given (click's auto_envvar_prefix);
# the root's own options read MLLIB_NAME. The command line wins over the variable, the variable
# over mllib.toml (where the library reads a value from there only when the option is unset).
ENV_PREFIX = "MLLIB"
QUIET, VERBOSE = "MLLIB_QUIET", "MLLIB_VERBOSE"
HELP_OPTIONS = ["--help", "-h"]

app = typer.Typer(
    name="mllib",
    help="Train, evaluate and serve a model.py: locally, in Docker, or on your GPU hosts.\n\n"
    "Both spellings work: `mllib train model.py --lr=0.01` and `mllib model.py --train --lr=0.01`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": HELP_OPTIONS, "auto_envvar_prefix": ENV_PREFIX},
)


def _version(value: bool) -> None:
    if value:
        from mllib._version import __version__

        print(f"mllib {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", help="Print mllib's version.", callback=_version, is_eager=True
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Results and errors only: no progress, notes or run headers."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Debug detail: mllib's debug log on stderr, and the traceback of an error.",
        ),
    ] = False,
) -> None:
    """Train, evaluate and serve a model.py: locally, in Docker, or on your GPU hosts."""
    if quiet and verbose:
        raise UsageError("--quiet and --verbose cannot be used together", hint="Choose one.")
    # Set in the environment, so that the library (mllib.terminal) and the processes mllib starts
    # (a detached run's supervisor, a deployment) follow it too.
    if quiet:
        os.environ[QUIET] = "1"
    if verbose:
        os.environ[VERBOSE] = "1"
        _debug_log()


def _debug_log() -> None:
    """mllib's log records, debug level included, on stderr (for `-v` only: importing mllib
    configures no logging)."""
    import logging
    import sys

    from mllib._version import __version__

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    log = logging.getLogger("mllib")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.debug("mllib %s, Python %s, %s", __version__, sys.version.split()[0], sys.executable)
    log.debug("working folder %s", os.getcwd())


app.command(context_settings=MODEL_COMMAND)(model_commands.train)
app.command(context_settings=MODEL_COMMAND)(model_commands.evaluate)
app.command(context_settings=MODEL_COMMAND)(model_commands.predict)
app.command()(init_cmd.init)
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(tune.app, name="tune")
app.command(context_settings=MODEL_COMMAND)(serve.serve)
app.add_typer(deploy.app, name="deploy")
app.add_typer(keys.app, name="keys")
app.command()(loadtest.loadtest)
app.add_typer(agents.app, name="agents")
app.add_typer(data.app, name="data")
app.add_typer(runtime_cmd.app, name="runtime")
app.command()(doctor.doctor)
app.add_typer(ray.app, name="ray")
app.add_typer(server.app, name="server")
app.command()(account.login)
app.command()(account.whoami)
app.command()(account.logout)
app.command()(queue_cmd.queue)
app.command()(dashboard.dashboard)
app.add_typer(monitoring.app, name="monitoring")
app.add_typer(schedules.app, name="schedules")
app.command("dash", hidden=True)(dashboard.dashboard)  # the short spelling


def command_names() -> set[str]:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


def command() -> TyperGroup:
    """The click command tree `mllib` runs (typer builds it from `app`): what `main()` runs, shell
    completion walks and the README's command table is checked against."""
    import typer.main

    group = typer.main.get_command(app)
    _environment_names(group, ENV_PREFIX)
    return group  # type: ignore[return-value]


def _environment_names(cmd, prefix: str) -> None:
    """Settle which variable each option reads, where click's automatic names fall short.

    Options that act and exit instead of setting a value (`--help`, `--version`, the completion
    options) read none: a stray MLLIB_VERSION in someone's environment must not turn every command
    into `--version`. An option named after a Python keyword (`json_`) reads MLLIB_..._JSON. The
    hidden commands that `mllib deploy MODEL` and `mllib tune MODEL` run read their group's names
    (MLLIB_DEPLOY_ENV, MLLIB_TUNE_TRIALS).
    """
    import typer.core

    # click makes a command's --help option on first use and keeps it: make it now, to see it.
    help_option = cmd.get_help_option(typer.Context(cmd, help_option_names=HELP_OPTIONS))
    for param in [*cmd.params, *([help_option] if help_option else [])]:
        if not isinstance(param, typer.core.TyperOption):
            continue
        if param.is_eager or not param.expose_value or "--help" in param.opts:
            param.allow_from_autoenv = False
        elif param.envvar is None and param.name and param.name.endswith("_"):
            param.envvar = f"{prefix}_{param.name.rstrip('_').upper()}"
    for name, sub in getattr(cmd, "commands", {}).items():
        stands_for_group = (isinstance(cmd, deploy.DeployGroup) and name == deploy.DEPLOY) or (
            isinstance(cmd, tune.TuneGroup) and name == tune.STUDY
        )
        if stands_for_group:  # a copy: commands may share one settings dict (MODEL_COMMAND)
            sub.context_settings = {**sub.context_settings, "auto_envvar_prefix": prefix}
        _environment_names(sub, prefix if stands_for_group else f"{prefix}_{name.upper()}")
