"""The terminal: rich consoles that respect NO_COLOR and CI=true (plain text, no animation).

The library draws its own progress (a run's image build) with these, and the CLI prints through
them, so both make the same decisions about colour, width and animation. Progress of any kind
(transfers, a load test, an image build) is a `bar` or `spinner` where `animated()`, and plain
`line`s elsewhere.

One rendering path for what users supplied (model, param, metric, dataset, file and key names,
reasons, errors): the consoles read no markup in strings, and show control characters (ESC,
BEL, CR, C1, bidi overrides) as escapes (`\x1b`), table cells included. mllib's own styling is
built with `styled("[bold]Run {}[/]", run_id)`, whose values are put in as plain text, or
`text(value, style)`.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from rich.console import Console

from mllib.safetext import printable as printable  # the one escaping of user text

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn
    from rich.status import Status
    from rich.text import Text


def styled(template: str, *values: object) -> Text:
    """mllib's own markup in `template` (`[bold]`, `[green]...[/]`) with `values` put into its
    `{}` as plain text: a user's `[/x]` or escape sequence is shown, never interpreted."""
    from rich.markup import escape
    from rich.text import Text

    return Text.from_markup(template.format(*(escape(printable(v)) for v in values)), emoji=False)


def text(value: object, style: str = "") -> Text:
    """`value` as plain text in one style."""
    from rich.text import Text

    return Text(printable(value), style=style)


class _Console(Console):
    """A console that reads no markup and shows control characters as escapes in every string
    it renders (prints, table cells, headers), whoever built it."""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(printable(text), **options)


def plain() -> bool:
    """True in CI or when NO_COLOR is set: no colour, spinners or progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or "NO_COLOR" in os.environ


# Output into a file or a pipe is not cut to rich's 80 columns: table cells stay whole and lines
# unwrapped, so logs and `| grep` see everything. COLUMNS, when set, still decides.
UNLIMITED_WIDTH = 10_000


def _width(stream: Any) -> int | None:
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else UNLIMITED_WIDTH


@cache
def err() -> Console:
    """Messages for people (headers, summaries, errors) go to stderr, keeping stdout for results."""
    return _Console(
        stderr=True,
        markup=False,  # strings are text; mllib's styling is built with styled()
        highlight=False,
        emoji=False,  # user text such as `model.py:M:` must print as written
        no_color=plain() or None,
        force_interactive=not plain(),
        width=_width(sys.stderr),
    )


@cache
def out() -> Console:
    return _Console(
        markup=False,
        highlight=False,
        emoji=False,
        no_color=plain() or None,
        force_interactive=not plain(),
        soft_wrap=True,
        width=_width(sys.stdout),
    )


def animated() -> bool:
    """Whether progress may be drawn as a live bar or spinner: a terminal, and not CI/NO_COLOR.

    Elsewhere (CI, a log file, a pipe) progress is a few plain lines.
    """
    return not plain() and err().is_terminal


def bar(*columns: str | ProgressColumn, transient: bool = False) -> Progress:
    """A live progress bar on stderr with these columns, already started; call `stop()` to end it.

    For use where `animated()`; `transient` clears it when it stops instead of leaving it shown.
    """
    from rich.progress import Progress

    live = Progress(*columns, console=err(), transient=transient)
    live.start()
    return live


def spinner() -> Status:
    """A live spinner on stderr, already started (text set with `update`); for use where `animated()`."""
    status = err().status("", spinner="dots")
    status.start()
    return status


def line(message: str, *, style: str | None = None) -> None:
    """One line of progress on stderr, printed as written (brackets are not rich markup)."""
    err().print(message, markup=False, highlight=False, style=style)
