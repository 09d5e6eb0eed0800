"""Showing what a runtime does before the run itself starts (building its image).

Every line goes to the run's log. On a terminal, a spinner shows the current build step and the
steps scroll above it; with CI=true or NO_COLOR each line is printed plainly instead.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

_STEP = re.compile(r"^(Step \d+/\d+ : .*|mllib: .*)$")


class PrepareProgress:
    """A `Job.progress` callback: appends to `log_path` and, when `show`, draws on stderr."""

    def __init__(self, log_path: Path, *, show: bool) -> None:
        self.log_path = log_path
        self.show = show
        self._lock = threading.Lock()
        self._status = None
        self._started = 0.0

    def __call__(self, line: str) -> None:
        with self._lock:
            with open(self.log_path, "ab") as log:
                log.write(line.encode(errors="replace") + b"\n")
            if self.show:
                self._draw(line)

    def close(self) -> None:
        """Stop the spinner (before the run's own output is echoed); safe to call again."""
        with self._lock:
            if self._status is not None:
                self._status.stop()
                self._status = None

    def _draw(self, line: str) -> None:
        from mllib import terminal

        if not terminal.animated():
            terminal.line(line)
            return
        if _STEP.match(line):
            terminal.line(line, style="dim")
        if self._status is None:
            self._started = time.monotonic()
            self._status = terminal.spinner()
        elapsed = time.monotonic() - self._started
        shown = line if len(line) < 100 else line[:97] + "..."
        self._status.update(terminal.text(f"Preparing the run ({elapsed:.0f} s): {shown}"))
