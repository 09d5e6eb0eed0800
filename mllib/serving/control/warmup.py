"""A canary's warm-up, left out of its judging: the first requests of each of its replicas pay
for cold starts (the model's first predict imports its libraries, fills caches, opens
connections; seconds, under load), and the requests sent to a replica before its first answer
wait behind them. A latency is counted when its request ends, so a warm-up of a fixed length
let a cold start longer than it into the first judged window, and a sound canary was rolled
back. Instead, each replica is warm once it has answered every request it was sent before its
first answer; the canary is judged on what it answered after every replica it was sent
requests to is warm (one that joins later, scaled up or replaced, warms up the same way).

>>> from mllib.serving.counters import Totals
>>> def t(in_flight, requests): return Totals(in_flight, requests, 0, 0, 0, ())
>>> w = Warmup()
>>> w.update(1.0, {"s2.0": t(3, 0), "s2.1": t(0, 0)}), w.update(4.0, {"s2.0": t(4, 1)})
(None, None)
>>> w.update(4.1, {"s2.0": t(1, 5), "s2.1": t(0, 0)})
4.1
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mllib.serving.counters import Totals


@dataclass
class _Replica:
    base: int  # requests it had answered when first seen (a slot's counts outlive a replica)
    mark: int | None = None  # requests it had been sent when it first answered
    warm_at: float | None = None


@dataclass
class Warmup:
    """Per replica of a canary, whether its cold start is behind it."""

    replicas: dict[str, _Replica] = field(default_factory=dict)

    def update(self, now: float, reading: dict[str, Totals]) -> float | None:
        """With the canary's replicas' figures now (as its senders counted them): from when
        to judge it (every replica warm), else None."""
        for ident, totals in reading.items():
            replica = self.replicas.setdefault(ident, _Replica(totals.requests))
            if replica.warm_at is not None:
                continue
            if replica.mark is None and totals.requests > replica.base:
                replica.mark = totals.requests + totals.in_flight
            if replica.mark is not None and totals.requests >= replica.mark:
                replica.warm_at = now
        sent = [  # a replica not sent anything yet (the least loaded is picked) has no say
            self.replicas[i].warm_at
            for i, totals in reading.items()
            if totals.in_flight or totals.requests > self.replicas[i].base
        ]
        if not sent or any(t is None for t in sent):
            return None
        return max(t for t in sent if t is not None)
