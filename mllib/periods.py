"""Schedules' periods: `--every` text as seconds, and a schedule's next time on its cadence
(the project's timer, mllib.schedules, and the team server's ticker, mllib.server.schedules).

>>> every_seconds("1d"), every_seconds("6h"), every_seconds("30m")
(86400, 21600, 1800)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from mllib.errors import UsageError

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EVERY = re.compile(r"(\d+)\s*([mhdw])")
MIN_EVERY_S = 60  # the timer `mllib schedules install` writes ticks every minute


def every_seconds(text: str) -> int:
    """Seconds in `text`: a number and a unit (m, h, d, w), as `30m`, `6h`, `1d`, `1w`."""
    match = _EVERY.fullmatch(text.strip().lower())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds < MIN_EVERY_S:
        raise UsageError(
            f"--every {text!r} is not a period of a minute or more",
            hint="Give a number and a unit: 30m, 6h, 1d or 1w.",
        )
    return seconds


def next_time(due: datetime, at: datetime, every_s: int) -> datetime:
    """The first time after `at` on the schedule's cadence (`due` plus whole periods): the times
    keep their hour, and periods missed while nothing ran are skipped, not run one by one."""
    missed = max(0, int((at - due).total_seconds() // every_s))
    return due + timedelta(seconds=every_s * (missed + 1))
