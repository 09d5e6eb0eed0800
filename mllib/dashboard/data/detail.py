"""One run's live parts: its metric curves, read point by point as they arrive, and the tail of its
output log."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.filetail import LineTail

if TYPE_CHECKING:
    from mllib.client.views import LogChunk

# A run's metric points after a seq, at most so many: (seq, name, step, value) in logging order.
ReadPoints = Callable[[int, int], list[tuple[int, str, int, float | None]]]

CURVE_POINTS = 1_000  # points kept per metric curve: older ones are thinned (every other kept)
LOG_LINES = 500  # lines of a run's log the tail keeps
LOG_START_BYTES = 256 * 1024  # how far back the tail starts in a log that is already long
POINTS_PER_READ = (
    50_000  # metric points read per refresh at most (a long run catches up over a few)
)


class MetricCurves:
    """A run's metric curves (`name`: that metric's alone), read point by point as they arrive
    and thinned to CURVE_POINTS each, so a run logging for hours costs the same memory as one
    logging for a minute."""

    def __init__(self, read: ReadPoints, name: str | None = None) -> None:
        self.read = read
        self.name = name
        self.after_seq = 0
        self.curves: dict[str, Curve] = {}

    def update(self) -> bool:
        """Read new points (at most POINTS_PER_READ); True when any arrived."""
        points = self.read(self.after_seq, POINTS_PER_READ)
        for seq, name, step, value in points:
            self.curves.setdefault(name, Curve()).add(step, value)
            self.after_seq = seq
        return bool(points)


class Curve:
    """One metric's points: every `stride`-th kept, the newest always shown."""

    def __init__(self, capacity: int = CURVE_POINTS) -> None:
        self.capacity = capacity
        self.steps: list[int] = []
        self.values: list[float | None] = []
        self.stride = 1
        self.count = 0
        self.last: tuple[int, float | None] | None = None

    def add(self, step: int, value: float | None) -> None:
        self.last = (step, value)
        if self.count % self.stride == 0:
            self.steps.append(step)
            self.values.append(value)
            if len(self.steps) > self.capacity:
                self.steps, self.values = self.steps[::2], self.values[::2]
                self.stride *= 2
        self.count += 1

    def points(self) -> tuple[list[int], list[float]]:
        """Steps and finite values to draw (NaN and infinities are left out of a plot)."""
        pairs = list(zip(self.steps, self.values, strict=True))
        if self.last is not None and (not pairs or pairs[-1][0] != self.last[0]):
            pairs.append(self.last)
        good = [(s, v) for s, v in pairs if v is not None and math.isfinite(v)]
        return [s for s, _ in good], [v for _, v in good]


class LogTail:
    """The newest lines of a run's output log, read from where the last read stopped."""

    def __init__(self, path: Path, max_lines: int = LOG_LINES) -> None:
        self.path = path
        self.max_lines = max_lines
        self._lines: LineTail | None = None

    def read(self) -> list[str]:
        """New complete lines since the last read (the first read: the last LOG_START_BYTES)."""
        skip_first = False
        if self._lines is None:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return []
            start = max(0, size - LOG_START_BYTES)
            self._lines = LineTail(self.path, start)
            skip_first = start > 0  # it starts inside a line
        lines = self._lines.read_lines()
        if skip_first and lines:
            lines = lines[1:]
        return shown(lines[-self.max_lines :])


class ServerLogTail:
    """The newest lines of a run's log on the team server, read from where the last read ended
    (`read_log`: `mllib.client.views.read_log` for one run)."""

    def __init__(self, read_log: Callable[..., LogChunk], max_lines: int = LOG_LINES) -> None:
        self.read_log = read_log
        self.max_lines = max_lines
        self.offset: int | None = None
        self.partial = b""  # the last line, until its end arrives
        self.skipping = False  # inside the line the first read started in

    def read(self) -> list[str]:
        """New complete lines since the last read (the first read: the last LOG_START_BYTES)."""
        if self.offset is None:
            chunk = self.read_log(tail=LOG_START_BYTES)
            self.skipping = chunk.start > 0  # it starts inside a line
        else:
            chunk = self.read_log(offset=self.offset)
        self.offset = chunk.end
        data = chunk.data
        if self.skipping and data:
            _, newline, data = data.partition(b"\n")
            self.skipping = not newline
        *lines, self.partial = (self.partial + data).split(b"\n")
        return shown(lines[-self.max_lines :])


def shown(lines: list[bytes]) -> list[str]:
    """Log lines as a terminal shows them: a progress bar redraws its line with \\r, so only what
    it shows last counts."""
    return [line.decode("utf-8", "replace").rsplit("\r", 1)[-1] for line in lines]
