"""The allowed ranges of numbers a user gives mllib (options, params, mllib.toml), checked where
they are parsed: one place that refuses NaN, infinities, out-of-range and oversized values as a
usage error (exit 2) naming the value and the range, before anything is recorded.

>>> SEED.check(-1, "--seed")  # doctest: +SKIP
UsageError: --seed got -1: allowed is a whole number from 0 to 4294967295
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mllib.errors import UsageError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite, JSON encoders and numpy hold


@dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high` (either may be absent; `low_open`: `low` itself excluded).
    `integer` asks for a whole number; floats must always be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def __str__(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if (self.low, self.high) == (INT64_MIN, INT64_MAX):
            return f"{kind} that fits in 64 bits (-2^63 to 2^63-1)"
        low = None if self.low is None else _num(self.low)
        high = None if self.high is None else _num(self.high)
        if low is not None and high is not None:
            if self.low_open:
                return f"{kind} greater than {low} and at most {high}"
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} greater than {low}" if self.low_open else f"{kind} of at least {low}"
        if high is not None:
            return f"{kind} of at most {high}"
        return kind if self.integer else "a finite number"

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def check(
        self, value: float, name: str, *, given: str | None = None, hint: str | None = None
    ) -> float:
        """`value`, or a UsageError naming `name`, the value (as `given`, when it was text) and
        this range."""
        if not self.contains(value):
            shown = _shown(value) if given is None else _text(given)
            raise UsageError(f"{name} got {shown}: allowed is {self}", hint=hint)
        return int(value) if self.integer else value

    def parse(self, text: str, name: str) -> int | float:
        """The number `text` spells (a whole number for an integer range), checked."""
        raw = text.strip()
        try:
            value: int | float = int(raw) if self.integer else float(raw)
        except ValueError:
            raise UsageError(f"{name} got {_text(text)}: allowed is {self}") from None
        return self.check(value, name, given=text)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _text(text: str) -> str:
    """A value as the user typed it, cut short: `'1e999'`, `'99999...99999' (41 characters)`."""
    if len(text) <= 24:
        return repr(text)
    return f"{text[:10]!r}…{text[-5:]!r} ({len(text)} characters)"


def _shown(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"{value:.3g}"  # not a 30-digit number in an error line
    return repr(value) if not isinstance(value, float) else f"{value:g}"


# The ranges mllib's options share (a feature's own ranges live with it).
SEED = Range(0, 2**32 - 1, integer=True)  # numpy's seed range
COUNT = Range(1, 10**9, integer=True)  # --limit, --workers, --concurrency
GPUS = Range(0, 1024, integer=True)
PRIORITY = Range(-(2**31), 2**31 - 1, integer=True)  # a queued run's priority: a 32-bit column
PORT = Range(1, 65535, integer=True)
SERVE_PORT = Range(1024, 65535, integer=True)  # `mllib serve` binds no privileged port
POSITIVE = Range(0, low_open=True)  # sizes, durations
RATE = Range(0, 1e9, low_open=True)  # requests per second (10^9: no limit in practice)
LOAD_WORKERS = Range(1, 64, integer=True)  # loadtest --workers: processes sending the load
REPLICAS = Range(0, 1024, integer=True)  # --max-replicas (0: one per CPU core)
PERCENT = Range(0, 100, low_open=True)  # --canary, --ab: a share of requests or callers
BURST = Range(1, 1e9)  # requests a key may send at once
NON_NEGATIVE = Range(0)
INT_PARAM = Range(INT64_MIN, INT64_MAX, integer=True)
FLOAT_PARAM = Range()  # any finite number
