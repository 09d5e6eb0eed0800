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
    bits = [[0] * cols for _ in range(rows)]
    owner = [[-1] * cols for _ in range(rows)]  # the series drawn last in each cell

    def column(x: int, y0: int, y1: int, index: int) -> None:
        """Light the dots of column x from y0 to y1 (either order)."""
        if y0 > y1:
            y0, y1 = y1, y0
        col, bit_col = x // 2, x % 2
        for y in range(y0, y1 + 1):
            bits[y // 4][col] |= _DOTS[y % 4][bit_col]
            owner[y // 4][col] = index

    def scale_x(step: int) -> int:
        return 0 if last == first else round((step - first) / (last - first) * (dots_x - 1))

    def scale_y(value: float) -> int:
        return dots_y // 2 if high == low else round((high - value) / (high - low) * (dots_y - 1))

    for index, one in enumerate(series):
        # Points are folded per dot column (its lowest, highest, first and last y), so a curve of
        # 100,000 points costs what one of a few hundred does; consecutive columns are joined.
        spans: dict[int, list[int]] = {}
        for step, value in zip(one.steps, one.values, strict=True):
            x, y = scale_x(step), scale_y(value)
            span = spans.get(x)
            if span is None:
                spans[x] = [y, y, y, y]
            else:
                span[0], span[1], span[3] = min(span[0], y), max(span[1], y), y
        previous = None
        for x in sorted(spans):
            low_y, high_y, first_y, last_y = spans[x]
            column(x, low_y, high_y, index)
            if previous is not None:
                px, py = previous
                _line((px, py), (x, first_y), lambda a, b, i=index: column(a, b, b, i))
            previous = (x, last_y)
    text = Text(no_wrap=True, overflow="crop")
    for row in range(rows):
        label = labels[0] if row == 0 else labels[1] if row == rows - 1 else ""
        text.append(f"{label:>{gutter - 1}}│", style="dim")
        # one span per run of cells in the same colour (a span per cell costs ~10x to render)
        run: list[str] = []
        run_color: int | None = None
        for col in range(cols):
            cell = bits[row][col]
            color = owner[row][col] if cell else None
            if color != run_color and run:
                text.append("".join(run), style=_style(run_color))
                run = []
            run_color = color
            run.append(chr(0x2800 + cell) if cell else " ")
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
