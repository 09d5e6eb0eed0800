"""What the commands about deployments share: `--env`, and the context they act in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mllib.cli import completion
from mllib.ranges import NON_NEGATIVE, Range

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


def deploy_context(*, read_only: bool = False) -> DeployContext:
    """The project's deployments: its workspace and serving settings (read from mllib.toml);
    `read_only` for commands that only read (they create no registry where none is)."""
    from mllib.serving.control.deploy import DeployContext

    if read_only:
        from mllib.cli.workspaces import reading

        return DeployContext.create(reading())
    return DeployContext.create()


def parse_duration(text: str, option: str, allowed: Range = NON_NEGATIVE) -> float:
    """`90`, `30s`, `5m`, `1h` as seconds within `allowed` (mllib.ranges: NaN, infinities and
    values out of range are usage errors); a usage error otherwise."""
    from mllib.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise UsageError(f"{option} must be a duration like 30s, 5m or 1h, not {text!r}") from None
    return float(allowed.check(seconds, option, given=text))


def agent_names(text: str | None) -> list[str] | None:
    """`--agents a1,a2` as a list of agent names (None when not given)."""
    if text is None:
        return None
    from mllib.agents.config import check_name

    names = [name.strip() for name in text.split(",")]
    if not all(names):
        from mllib.errors import UsageError

        raise UsageError(f"--agents takes agent names separated by commas, not {text!r}")
    return [check_name(name) for name in names]
