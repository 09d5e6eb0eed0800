"""Every numeric option of the CLI is declared here's way: `number_option("--seed", SEED, ...)`
parses the text, checks it against its mllib.ranges.Range, and says the range in `--help`; a
value outside it is a usage error (exit 2) naming the value and the range, before the command
does anything. (A test walks the command tree: a bare int or float option fails it.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from mllib.ranges import Range


def number_parser(name: str, allowed: Range) -> Callable[[Any], int | float]:
    """The typer parser of option `name`: its text as a number within `allowed`."""

    def parse(value: Any) -> int | float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return allowed.check(value, name)  # a default, already a number
        return allowed.parse(str(value), name)

    parse.allowed, parse.option = allowed, name  # type: ignore[attr-defined]  # for the tests
    return parse


def number_option(name: str, allowed: Range, *more: str, help: str, **options: Any) -> Any:
    """A typer.Option for a number within `allowed` (more names in `more`, e.g. "-c"); `--help`
    shows INTEGER or FLOAT for its value, as for typer's own numbers."""
    options.setdefault("metavar", "INTEGER" if allowed.integer else "FLOAT")
    return typer.Option(
        name,
        *more,
        parser=number_parser(name, allowed),
        help=f"{help} Allowed: {allowed}.",
        **options,
    )
