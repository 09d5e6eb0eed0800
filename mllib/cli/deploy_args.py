"""What the commands about deployments share: `--env`, and the context they act in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mllib.cli import completion

if TYPE_CHECKING:
    from mllib.serving.control.deploy import DeployContext

EnvOpt = Annotated[
    str, typer.Option("--env", help="staging or prod.", autocompletion=completion.environments)
]
# `--env` of the commands that list: all environments unless one is named.
OnlyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        help="Only this environment.",
        show_default=False,
        autocompletion=completion.environments,
    ),
]


def deploy_context() -> DeployContext:
    """The project's deployments: its workspace and serving settings (read from mllib.toml)."""
    from mllib.serving.control.deploy import DeployContext

    return DeployContext.create()
