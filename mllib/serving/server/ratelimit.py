"""Per-key token buckets that hold across all of a server's API-server processes.

LitServe forks one API server per process; buckets kept in each one's memory would let a key
make up to N times its limit, unevenly. These live in shared memory created before the fork,
behind one lock: taking a token is a few array reads and writes.

>>> buckets = SharedBuckets(slots=8, flag_interval_s=60)
>>> [buckets.take(7, rate=1.0, burst=2.0, now=100.0).allowed for _ in range(3)]
[True, True, False]
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    flag: bool = False  # the first refusal for this key in a while: report it


ALLOWED = Decision(True)  # one object for every request let through


def refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    """Tokens in a bucket after refilling at `rate` per second since `last`, capped at `burst`."""
    return min(burst, tokens + max(0.0, now - last) * rate)


class SharedBuckets:
    """Token buckets for up to `slots` keys (by key number), shared by forked processes."""

    def __init__(self, slots: int = 4096, flag_interval_s: float = 300.0) -> None:
        ctx = mp.get_context("fork")
        self.slots = slots
        self.flag_interval_s = flag_interval_s
        self._lock = ctx.Lock()
        self._keys = ctx.RawArray("q", slots)  # key number + 1; 0 is a free slot
        self._tokens = ctx.RawArray("d", slots)
        self._stamps = ctx.RawArray("d", slots)
        self._flagged = ctx.RawArray("d", slots)

    def _slot(self, key: int, burst: float, now: float) -> int:
        marker = key + 1
        start = key % self.slots
        for probe in range(self.slots):
            slot = (start + probe) % self.slots
            held = self._keys[slot]
            if held == marker:
                return slot
            if held == 0:
                self._keys[slot] = marker
                self._tokens[slot] = burst
                self._stamps[slot] = now
                self._flagged[slot] = -1e18
                return slot
        return -1

    def take(self, key: int, *, rate: float, burst: float, now: float) -> Decision:
        """Take one token from key `key`'s bucket at time `now` (monotonic seconds)."""
        with self._lock:
            slot = self._slot(key, burst, now)
            if slot < 0:  # more distinct keys than slots: refuse rather than go unlimited
                return Decision(False, 1.0, False)
            tokens = refill(self._tokens[slot], self._stamps[slot], now, rate, burst)
            self._stamps[slot] = now
            if tokens >= 1.0:
                self._tokens[slot] = tokens - 1.0
                return ALLOWED
            self._tokens[slot] = tokens
            flag = now - self._flagged[slot] >= self.flag_interval_s
            if flag:
                self._flagged[slot] = now
            return Decision(False, (1.0 - tokens) / rate if rate > 0 else 60.0, flag)
