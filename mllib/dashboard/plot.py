"""Metric curves drawn in braille (2x4 dots a cell): one or several series over their steps, with
the value range on the left and the step range below. Sized to the widget, redrawn as points come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from mllib.dashboard.text import clean, fmt_value

COLORS = ("cyan", "magenta", "yellow", "green", "blue", "red")
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][column] of a cell


@dataclass
class Series:
    label: str
    steps: Sequence[int]
    values: Sequence[float]


def draw(series: list[Series], width: int, height: int) -> Text:
    """The chart as text of `height` lines, `width` cells wide (legend included)."""
    points = [(s, v) for one in series for s, v in zip(one.steps, one.values, strict=True)]
    if not points or width < 12 or height < 3:
        return Text("no points yet" if not points else "", style="dim")
    low, high = min(v for _, v in points), max(v for _, v in points)
    first, last = min(s for s, _ in points), max(s for s, _ in points)
    labels = [fmt_value(high), fmt_value(low)]
    gutter = max(len(x) for x in labels) + 1
    legend = len(series) > 1
    cols, rows = width - gutter, height - 1 - (1 if legend else 0)
    if cols < 4 or rows < 1:
        return Text("")
    dots_x, dots_y = cols * 2, rows * 4
    cells: dict[tuple[int, int], list[int]] = {}  # (row, col) -> [bits, series index]

    def plot(x: int, y: int, index: int) -> None:
        cell = cells.setdefault((y // 4, x // 2), [0, index])
        cell[0] |= _DOTS[y % 4][x % 2]
        cell[1] = index

    def scale(step: int, value: float) -> tuple[int, int]:
        x = 0 if last == first else round((step - first) / (last - first) * (dots_x - 1))
        y = dots_y // 2 if high == low else round((high - value) / (high - low) * (dots_y - 1))
        return x, y

    for index, one in enumerate(series):
        previous = None
        for step, value in zip(one.steps, one.values, strict=True):
            x, y = scale(step, value)
            if previous is None:
                plot(x, y, index)
            else:
                _line(previous, (x, y), lambda a, b, i=index: plot(a, b, i))
            previous = (x, y)
    text = Text(no_wrap=True, overflow="crop")
    for row in range(rows):
        label = labels[0] if row == 0 else labels[1] if row == rows - 1 else ""
        text.append(f"{label:>{gutter - 1}}│", style="dim")
        # one span per run of cells in the same colour (a span per cell costs ~10x to render)
        run: list[str] = []
        run_color: int | None = None
        for col in range(cols):
            cell = cells.get((row, col))
            color = None if cell is None else cell[1]
            if color != run_color and run:
                text.append("".join(run), style=_style(run_color))
                run = []
            run_color = color
            run.append(" " if cell is None else chr(0x2800 + cell[0]))
        text.append("".join(run) + "\n", style=_style(run_color))
    span = f"step {first}"
    end = str(last)
    text.append(" " * gutter + span + " " * max(1, cols - len(span) - len(end)) + end, style="dim")
    if legend:
        text.append("\n")
        for index, one in enumerate(series):
            text.append("━ ", style=COLORS[index % len(COLORS)])
            text.append(clean(one.label) + "  ")
    return text


def _style(index: int | None) -> str:
    return "" if index is None else COLORS[index % len(COLORS)]


def _line(a: tuple[int, int], b: tuple[int, int], plot) -> None:
    """Bresenham's line from a to b, both ends included."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        plot(x0, y0)
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


class Chart(Widget):
    """A widget showing `series`; set them with `show()`."""

    DEFAULT_CSS = "Chart { height: 1fr; min-height: 4; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: list[Series] = []
        self.title = ""

    def show(self, series: list[Series], title: str = "") -> None:
        self.series, self.title = series, title
        self.refresh()

    def render(self) -> Text:
        size = self.content_size
        head = Text(clean(self.title), style="bold") if self.title else None
        body = draw(self.series, size.width, size.height - (1 if head else 0))
        return Text("\n").join([head, body]) if head else body
