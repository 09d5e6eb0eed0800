"""Terminal output: rich consoles that respect NO_COLOR and CI=true (plain text, no animation)."""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table


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
    return Console(
        stderr=True,
        highlight=False,
        emoji=False,  # user text such as `model.py:M:` must print as written
        no_color=plain() or None,
        force_interactive=not plain(),
        width=_width(sys.stderr),
    )


@cache
def out() -> Console:
    return Console(
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


def print_json(data: Any) -> None:
    from mllib.metric_values import json_safe

    # JSON has no NaN or Infinity: they are spelled "NaN", "Infinity", "-Infinity".
    sys.stdout.write(json.dumps(json_safe(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(*columns: str, whole: tuple[str, ...] = ()) -> Table:
    """The one table style of every listing: no borders, upper-case headers; cells of the `whole`
    columns (ids, names, URLs a user copies) are never wrapped."""
    from rich.table import Table

    grid = Table(box=None, pad_edge=False)
    for column in columns:
        grid.add_column(column, no_wrap=column in whole)
    return grid


def print_table(grid: Table) -> None:
    """Print a table on stdout; in a narrow terminal the other columns give way to whole ones."""
    from rich.text import Text

    for column in grid.columns:
        if column.no_wrap:
            cells = [column.header, *column.cells]
            column.min_width = max(Text.from_markup(str(c)).cell_len for c in cells)
    out().print(grid)


STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
}


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def fmt_time(text: str | None) -> str:
    """A registry time (ISO 8601, UTC) as this machine's local time: `2026-01-31 14:05:09`."""
    if not text:
        return "-"
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def hanging(text: str, indent: int) -> str:
    """`text` with its further lines (a stored error's hint) indented to sit under its first,
    which follows a label `indent` characters wide."""
    return text.replace("\n", "\n" + " " * indent)
