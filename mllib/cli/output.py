"""Terminal output of the CLI: tables and JSON (values are formatted by mllib.display, and the
consoles, and whether to animate, are mllib.terminal's, both shared with the library)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

# Values read the same everywhere (mllib.display); the consoles are mllib.terminal's, and the
# CLI prints through them as output.err(), output.out().
from mllib.display import STATUS_STYLE
from mllib.display import fmt_duration as fmt_duration
from mllib.display import fmt_time as fmt_time
from mllib.display import fmt_value as fmt_value
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


def status_text(status: str) -> Text:
    return text(status, STATUS_STYLE.get(status, ""))


def hanging(text: str, indent: int) -> str:
    """`text` with its further lines (a stored error's hint) indented to sit under its first,
    which follows a label `indent` characters wide."""
    return text.replace("\n", "\n" + " " * indent)
