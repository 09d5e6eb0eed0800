"""How many replicas a variant should run, decided from what its front measured a moment ago:
the exact number of requests in flight (read every tick from the shared counters, not pushed
every 10 s) and the latency of the last second.

- Up, fast: when the in-flight requests averaged over `up_window_s` (half a second) exceed
  `target_inflight` per replica, to as many replicas as that load needs (up to the maximum), at
  once. Sooner still when p99 nears the objective while requests queue (more than one in flight
  per replica): one more replica (then it waits 2 s for that replica to show in the latency).
- Down, slowly: one replica at a time, only after `scale_down_after_s` of quiet since the last
  change, quiet meaning the load would still sit at half the target or less with one replica
  fewer (that gap keeps a steady load from swinging back and forth). A scale-up soon after a
  scale-down (within 10 minutes: it came down too early) doubles the wait, up to 8 times, so an
  unsteady load cannot make it flap.
Replicas still starting count as replicas: nothing is asked for twice.

A candidate (canary, A/B, shadow) starts with replicas in proportion to its share of requests
(`share_replicas`): each of its replicas then takes as many requests as each of stable's, so the
judge compares the versions, not a candidate queueing on too few replicas with a stable that has
enough (which rolled back a sound A/B test at 50%).

>>> scaler = Autoscaler(Scaling(min_replicas=1, max_replicas=4, target_inflight=4))
>>> [scaler.observe(t / 10, in_flight=13, p99_s=0.01, replicas=1) for t in range(6)][-1]
Decision(replicas=4, direction='up', reason='13.0 requests in flight > 4 per replica × 1')
"""

from __future__ import annotations

import bisect
import math
import os
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Scaling:
    """[serve] min_replicas, max_replicas, target_inflight, p99_objective_ms, scale_down_after_s."""

    min_replicas: int = 1
    max_replicas: int = 0  # 0: one per CPU core of this machine
    target_inflight: float = 4.0  # requests in flight per replica it aims at
    p99_objective_ms: float = 100.0
    scale_down_after_s: float = 300.0
    up_window_s: float = 0.5

    @property
    def ceiling(self) -> int:
        return max(self.min_replicas, self.max_replicas or os.cpu_count() or 1)


@dataclass(frozen=True)
class Decision:
    replicas: int
    direction: str  # up or down
    reason: str


REVERSAL_MEMORY_S = 600.0
SETTLE_S = 2.0  # after a change, the latency path waits this long for it to show
MAX_DOUBLINGS = 3  # the quiet period grows to 8 times the setting at most


def share_replicas(stable: int, weight: float, scaling: Scaling, *, copies: bool = False) -> int:
    """Replicas for a candidate taking `weight`% of requests beside `stable` replicas of stable,
    so that each of its replicas takes what each of stable's does: a canary's share is taken
    from stable (w / (100 - w) of stable's replicas), a shadow's is `copies` of requests
    stable still answers (w / 100). Within min_replicas and the ceiling.

    >>> share_replicas(2, 50, Scaling(max_replicas=4)), share_replicas(2, 25, Scaling(max_replicas=4))
    (2, 1)
    """
    if copies:
        wanted = stable * weight / 100
    else:
        wanted = stable * weight / (100 - weight) if weight < 100 else stable
    return max(scaling.min_replicas, min(scaling.ceiling, math.ceil(wanted - 1e-9)))


class Autoscaler:
    """One variant's scaling policy; `observe` is called every tick with the time (seconds, any
    monotonic origin) and what was measured, and says when to change the replica count."""

    def __init__(self, scaling: Scaling) -> None:
        self.scaling = scaling
        self.keep_s = max(scaling.up_window_s, scaling.scale_down_after_s * 2**MAX_DOUBLINGS) + 1.0
        # (time, sum of in-flight before it, samples before it): any window's mean in a lookup.
        self.samples: deque[tuple[float, float, int]] = deque()
        self.seconds: deque[tuple[int, float]] = deque()  # (whole second, peak in flight)
        self.total = 0.0
        self.count = 0
        self.last_change: float | None = None
        self.last_direction: str | None = None
        self.regrets: deque[float] = deque()  # scale-ups that came soon after a scale-down

    def _record(self, now: float, in_flight: float) -> None:
        self.samples.append((now, self.total, self.count))  # the sums before this sample
        self.total += in_flight
        self.count += 1
        second = int(now)
        if self.seconds and self.seconds[-1][0] == second:
            self.seconds[-1] = (second, max(self.seconds[-1][1], in_flight))
        else:
            self.seconds.append((second, in_flight))
        while now - self.samples[0][0] > self.keep_s:
            self.samples.popleft()
        while self.seconds and now - self.seconds[0][0] > self.keep_s:
            self.seconds.popleft()

    def _average(self, now: float, window_s: float) -> float | None:
        """Mean in-flight over the last `window_s`, None until that much was observed."""
        if not self.samples or now - self.samples[0][0] < window_s * 0.9:
            return None
        start = bisect.bisect_left(self.samples, now - window_s, key=lambda s: s[0])
        _, total_before, count_before = self.samples[start]
        counted = self.count - count_before
        return (self.total - total_before) / counted if counted else None

    def _peak(self, now: float, window_s: float) -> float:
        return max((v for t, v in self.seconds if now - t <= window_s + 1), default=0.0)

    def down_wait_s(self, now: float) -> float:
        """How long the quiet must last now: doubled by each recent regret."""
        while self.regrets and now - self.regrets[0] > REVERSAL_MEMORY_S:
            self.regrets.popleft()
        doublings = min(len(self.regrets), MAX_DOUBLINGS)
        return self.scaling.scale_down_after_s * 2**doublings

    def observe(
        self, now: float, *, in_flight: float, p99_s: float | None, replicas: int
    ) -> Decision | None:
        """A change of the replica count to make now, or None."""
        s = self.scaling
        self._record(now, float(in_flight))
        floor, ceiling = s.min_replicas, s.ceiling
        if replicas < floor:
            return self._decide(now, floor, "up", f"fewer than min_replicas = {floor}")
        if replicas > ceiling:
            return self._decide(now, ceiling, "down", f"more than max_replicas = {ceiling}")
        recent = self._average(now, s.up_window_s)
        if recent is not None and recent > s.target_inflight * replicas and replicas < ceiling:
            wanted = min(ceiling, max(replicas + 1, math.ceil(recent / s.target_inflight)))
            reason = (
                f"{recent:.1f} requests in flight > {s.target_inflight:g} per replica × {replicas}"
            )
            return self._decide(now, wanted, "up", reason)
        objective = s.p99_objective_ms / 1000.0
        queueing = in_flight > replicas
        settled = self.last_change is None or now - self.last_change >= SETTLE_S
        if (
            p99_s is not None
            and p99_s >= 0.8 * objective
            and queueing
            and settled
            and replicas < ceiling
        ):
            reason = (
                f"p99 {p99_s * 1000:.0f}ms is near the {s.p99_objective_ms:g}ms objective "
                f"with {in_flight:g} requests in flight"
            )
            return self._decide(now, replicas + 1, "up", reason)
        if replicas <= floor:
            return None
        wait = self.down_wait_s(now)
        since = now - self.last_change if self.last_change is not None else now - self.samples[0][0]
        quiet = self._average(now, wait)
        if since < wait or quiet is None:
            return None
        room = s.target_inflight * (replicas - 1) / 2
        slow = p99_s is not None and p99_s >= 0.5 * objective
        if (
            quiet <= room
            and self._peak(now, wait) <= s.target_inflight * (replicas - 1)
            and not slow
        ):
            reason = (
                f"{quiet:.1f} requests in flight on average for {wait:.0f}s, "
                f"≤ half of {s.target_inflight:g} per replica × {replicas - 1}"
            )
            return self._decide(now, replicas - 1, "down", reason)
        return None

    def _decide(self, now: float, replicas: int, direction: str, reason: str) -> Decision:
        if direction == "up" and self.last_direction == "down":
            self.regrets.append(now)
        self.last_change, self.last_direction = now, direction
        return Decision(replicas, direction, reason)

    def changed_elsewhere(self, now: float) -> None:
        """The replica count changed for another reason (a rollout, a replaced replica): the
        quiet period starts again."""
        self.last_change = now
