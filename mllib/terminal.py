"""The terminal: rich consoles that respect NO_COLOR and CI=true (plain text, no animation).

The library draws its own progress (a run's image build) with these, and the CLI prints through
them, so both make the same decisions about colour, width and animation. Progress of any kind
(transfers, a load test, an image build) is a `bar` or `spinner` where `animated()`, and plain
`line`s elsewhere. What the library has to tell a person outside a command's result (a run went
to an agent, a file was left out of a snapshot) goes through a `Notify` callback whose default is
`notice`: one line on stderr, never printed by the library itself. rich is imported when
something is first shown, so importing this module costs nothing (an agent host, where mllib's
supervisor runs in the background and shows nothing, does not even install rich).

One rendering path for what users supplied (model, param, metric, dataset, file and key names,
reasons, errors): the consoles read no markup in strings, and show control characters (ESC,
BEL, CR, C1, bidi overrides) as escapes (`\x1b`), table cells included. mllib's own styling is
built with `styled("[bold]Run {}[/]", run_id)`, whose values are put in as plain text, or
`text(value, style)`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from mllib.safetext import printable as printable  # the one escaping of user text

if TYPE_CHECKING:
    from rich.console import Console
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


@cache
def _console_class() -> type[Console]:
    """A console that reads no markup and shows control characters as escapes in every string
    it renders (prints, table cells, headers), whoever built it (made on first use: rich is
    imported only when something is shown)."""
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **options: Any) -> Text:
            return super().render_str(printable(text), **options)

    return SafeConsole


def plain() -> bool:
    """True in CI or when NO_COLOR is set: no colour, spinners or progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or "NO_COLOR" in os.environ


Notify = Callable[[str], None]  # how the library tells a person something: one line of text


def quiet() -> bool:
    """`mllib -q` (MLLIB_QUIET): results and errors only; progress, notes and headers are not shown."""
    return _flag("MLLIB_QUIET")


def verbose() -> bool:
    """`mllib -v` (MLLIB_VERBOSE): debug detail, such as the traceback behind an error."""
    return _flag("MLLIB_VERBOSE")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "t", "yes", "y", "on")


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
    return _console_class()(
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
    return _console_class()(
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
    return not plain() and not quiet() and err().is_terminal


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
    """One line of progress on stderr, printed as written (brackets are not rich markup); none
    with `-q`."""
    if not quiet():
        err().print(message, markup=False, highlight=False, style=style)


def notice(message: str) -> None:
    """The library's default `Notify`: `mllib: MESSAGE` as one line on stderr (written as is:
    brackets are not rich markup, and the line is not wrapped). Shown with `-q` too: a notice
    says something about the run a person must know (a wait, a lost connection, a retry)."""
    err().print(f"mllib: {message}", markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A note beside a command's result (what mllib did for you, what to do next time) on stderr,
    printed as written; none with `-q`."""
    if not quiet():
        err().print(message, markup=False, highlight=False, soft_wrap=True)
