"""Time for the deploy rules, behind a small interface so tests can move it by hand.

>>> clock = FakeClock(1_700_000_000.0)
>>> clock.advance(600); clock.time()
1700000600.0
"""

from __future__ import annotations

import time
from typing import Protocol

from mllib.registry.runs import iso as iso  # the registry's time text, re-exported


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to (tests of cooldowns, budgets and windows)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def human_duration(seconds: float) -> str:
    """`42s`, `9m05s`, `3h20m`: how long something still lasts, for refusal messages."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
