"""The CLI's command tree, read from the typer app itself, so tests that must cover every command
(numeric options, user text in output) fail when a command is added without being covered."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from typing import Any

import typer
from typer.models import OptionInfo


def commands(
    app: typer.Typer | None = None, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, Callable]]:
    """("runs list", callback) for every command, hidden ones included."""
    if app is None:
        from mllib.cli.app import app
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        yield " ".join((*prefix, name)), info.callback
    for group in app.registered_groups:
        yield from commands(group.typer_instance, (*prefix, group.name))


def options(callback: Callable) -> Iterator[tuple[str, type, OptionInfo]]:
    """(--name, value type, typer's OptionInfo) of a command's options."""
    hints = typing.get_type_hints(callback, include_extras=True)
    for name, hint in hints.items():
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        base, *extras = typing.get_args(hint)
        info = next((e for e in extras if isinstance(e, OptionInfo)), None)
        if info is None:
            continue
        decls = [d for d in (info.default, *info.param_decls) if str(d).startswith("--")]
        yield decls[0] if decls else f"--{name.replace('_', '-')}", _value_type(base), info


def _value_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation
