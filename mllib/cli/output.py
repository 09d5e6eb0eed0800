"""Terminal output of the CLI: tables, JSON and the formatting of values (the consoles, and
whether to animate, are mllib.terminal's, shared with the library)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

# The consoles are mllib.terminal's; the CLI prints through them as output.err(), output.out().
from mllib.terminal import animated as animated
from mllib.terminal import err as err
from mllib.terminal import out as out
from mllib.terminal import plain as plain
from mllib.terminal import printable as printable
from mllib.terminal import styled as styled
from mllib.terminal import text as text

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text


def print_json(data: Any) -> None:
    from mllib.metric_values import json_safe

    # JSON has no NaN or Infinity: they are spelled "NaN", "Infinity", "-Infinity".
    sys.stdout.write(json.dumps(json_safe(data), indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(*columns: str, whole: tuple[str, ...] = ()) -> Table:
    """The one table style of every listing: no borders, upper-case headers; cells of the `whole`
    columns (ids, names, URLs a user copies) are never wrapped. Cells are text as given (str, or
    a `text()`/`styled()` for style), never markup."""
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
            column.min_width = max(
                c.cell_len if isinstance(c, Text) else Text(printable(c)).cell_len for c in cells
            )
    out().print(grid)


STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
}


def status_text(status: str) -> Text:
    return text(status, STATUS_STYLE.get(status, ""))


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
