"""Transfer progress on stderr: a rich bar (bytes, rate, ETA), or plain lines in CI and NO_COLOR mode
and when stderr is not a terminal.

Implements mllib.datasets.progress.Progress; use it as a context manager around the transfer.
"""

from __future__ import annotations

import time
from types import TracebackType

from mllib import terminal

PLAIN_EVERY_S = 5.0  # plain mode: a line at least this often, and at every further 10%


def _fmt(n: float) -> str:
    from mllib.datasets.format import human_bytes

    return human_bytes(n)


def _rich_bar():
    """A transfer's live bar: what, how far, bytes, rate and time left."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return terminal.bar(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )


class TransferProgress:
    """`with TransferProgress() as progress: upload(..., progress=progress)`.

    Nothing is drawn until a transfer starts; `close()` ends the bar early (before a run's output).
    """

    def __init__(self) -> None:
        self.plain = not terminal.animated()
        self._bar = None
        self._task = None
        self._line: _PlainLine | None = None

    def __enter__(self) -> TransferProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None
        if self._line is not None:
            self._line.finish()
            self._line = None

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        description = terminal.printable(description)  # a dataset or file name, shown as text
        if self.plain:
            if self._line is not None and self._line.description != description:
                self._line.finish()
            self._line = _PlainLine(description, total, done)
            return
        if self._bar is None:
            self._bar = _rich_bar()
        if self._task is None:
            self._task = self._bar.add_task(description, total=total, completed=done)
        else:
            self._bar.reset(self._task, total=total, completed=done, description=description)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, nbytes)
        elif self._line is not None:
            self._line.advance(nbytes)

    def note(self, message: str) -> None:
        terminal.line(message)


class _PlainLine:
    """Progress as occasional lines: at every 10% and at least every PLAIN_EVERY_S seconds."""

    def __init__(self, description: str, total: int | None, done: int) -> None:
        self.description = description
        self.total = total
        self.done = self.start_done = done
        self.started = self.last_time = time.monotonic()
        self.last_tenth = self._tenth()
        self.finished = False

    def _tenth(self) -> int:
        return int(self.done * 10 / self.total) if self.total else 0

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if self.total is not None and self.done >= self.total:
            self.finish()
        elif self._tenth() > self.last_tenth or now - self.last_time >= PLAIN_EVERY_S:
            self.last_tenth, self.last_time = self._tenth(), now
            self._print()

    def _print(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        of = (
            f" / {_fmt(self.total)} ({self.done * 100 // max(self.total, 1)}%)"
            if self.total
            else ""
        )
        eta = ""
        if not final and self.total and rate > 0:
            eta = f", {max(self.total - self.done, 0) / rate:.0f} s left"
        terminal.line(f"{self.description}: {_fmt(self.done)}{of} at {_fmt(rate)}/s{eta}")

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._print(final=True)
