"""Where a request to a deployment is answered, decided in each HTTP process of its stable server.

The process itself holds the stable version's model: most requests are predicted right there,
with no hop. The routes (routes.json, written by the deployment's controller) name what else
runs: a candidate beside stable, and replicas on other hosts, each reached over a link. When the
controller changes them it bumps the generation in the shared counters, which every request
checks (one read of shared memory), so a change lands on the next request.

- Variant: a `canary` takes its weight's share by chance, or, for an A/B test (`sticky_by`), by
  a hash of the caller's API key or of a header, so one caller always sees one variant. A
  `shadow` gets a copy of its weight's share: its answer is compared with the live one and
  thrown away. An admin key may force a variant with the `X-Mllib-Variant` header (debugging).
- Replica: for stable, this process, unless a remote stable replica has fewer requests in
  flight per process; for a candidate, its replica with the fewest in flight (exact, from the
  counters of every process).
- A replica that cannot be reached, or whose link breaks before it answers (it was stopped or
  killed, its host went away), counts as an error of that replica, and the request is answered
  here by stable's model instead: predictions are expected to have no side effects.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mllib.serving.counters import Counters, ProcessCounters
from mllib.serving.routes import CANARY, SHADOW, STABLE, VARIANT_HEADER, Replica, Routes, Variant
from mllib.serving.server.keycheck import KnownKey
from mllib.serving.server.link import LinkBroken, LinkClient

# After each shadow answer: (variant, replica, status or None, seconds, differed or None).
ShadowHook = Callable[[Variant, Replica, "int | None", float, "bool | None"], None]


class Forbidden(Exception):
    """The request asked for something its key may not (forcing a variant without an admin key)."""


class NoVariant(Exception):
    """The request forced a variant that is not serving."""


@dataclass(frozen=True)
class Target:
    variant: Variant
    replica: Replica | None  # None: this process's own model (stable)


class Router:
    """One HTTP process's view of the routes, and its links to the replicas they name."""

    def __init__(
        self,
        routes_path: Path,
        counters: ProcessCounters,
        timeout_s: float,
        on_shadow: ShadowHook | None = None,
    ) -> None:
        self.routes_path = routes_path
        self.counters = counters
        self.shared: Counters = counters.counters
        self.timeout_s = timeout_s
        self.on_shadow = on_shadow
        self.generation = -1
        self.routes = Routes(0)
        self.stable = Variant(STABLE, "", 100.0)
        self.here = Target(self.stable, None)  # stable, in this process: most requests' target
        self.canary: Variant | None = None
        self.shadow: Variant | None = None
        self.clients: dict[tuple[str, str], LinkClient] = {}  # (replica id, address) -> link
        self.links: dict[str, list[LinkClient]] = {}  # replica id -> its processes' links
        self.rng = random.Random()
        self.shadow_tasks: set[asyncio.Task] = set()

    def refresh(self) -> Routes:
        """The current routes (reread when the controller changed them)."""
        generation = self.shared.generation
        if generation != self.generation:
            try:
                routes = Routes.read(self.routes_path)
            except (OSError, ValueError):
                return self.routes  # not there yet, or being replaced: read it next time
            self.generation = generation
            self._relink(routes)
            self.routes = routes
            self.stable = routes.variant(STABLE) or self.stable
            self.here = Target(self.stable, None)
            canary = routes.variant(CANARY)
            self.canary = canary if canary and canary.live and canary.weight > 0 else None
            shadow = routes.variant(SHADOW)
            self.shadow = shadow if shadow and shadow.live and shadow.weight > 0 else None
        return self.routes

    def _relink(self, routes: Routes) -> None:
        wanted: dict[tuple[str, str], LinkClient] = {}
        links: dict[str, list[LinkClient]] = {}
        for variant in routes.variants:
            for replica in variant.replicas:
                address = replica.address
                client = self.clients.get((replica.id, address)) or LinkClient(
                    address, replica.token
                )
                wanted[(replica.id, address)] = client
                links.setdefault(replica.id, []).append(client)
        for ident, client in self.clients.items():
            if ident not in wanted:
                client.close()
        self.clients, self.links = wanted, links

    def target(self, key: KnownKey | None, headers: dict[bytes, bytes]) -> Target:
        """Where this request goes (after refresh())."""
        forced = headers.get(VARIANT_HEADER)
        if forced is not None:
            return self._forced(forced.decode("latin-1").strip().lower(), key)
        canary = self.canary
        if canary is not None:
            routes = self.routes
            share = (
                self.rng.random() * 100.0
                if routes.sticky_by is None
                else sticky_share(routes, key, headers)
            )
            if share < canary.weight:
                replica = self.pick(canary)
                if replica is not None:
                    return Target(canary, replica)
        replica = self._stable_replica()
        return self.here if replica is None else Target(self.stable, replica)

    def _forced(self, name: str, key: KnownKey | None) -> Target:
        if key is None or not key.admin:
            raise Forbidden(
                f"Only an admin API key may choose a variant with X-Mllib-Variant ({name})."
            )
        if name == STABLE:
            return self.here
        variant = self.canary if name == CANARY else None
        replica = self.pick(variant) if variant is not None else None
        if variant is None or replica is None:
            raise NoVariant(f"No {name} variant is serving here now.")
        return Target(variant, replica)

    def _stable_replica(self) -> Replica | None:
        """None (this process) unless a remote stable replica is less loaded per process; with
        replicas placed on agents, the least loaded of them (this process: none is live)."""
        remote = self.stable.live
        if not remote:
            return None
        if self.routes.extra.get("placement") == "agents":  # replicas on agents answer
            return self.pick(self.stable)
        mine = self.counters.counters.process_totals(self.counters.index, 0).in_flight
        if mine == 0:
            return None
        best = self.pick(self.stable)
        if best is None:
            return None
        load = self.shared.in_flight(best.slot) / max(1, best.processes)
        return best if load < mine else None

    def pick(self, variant: Variant) -> Replica | None:
        """The replica of `variant` with the fewest requests in flight per process."""
        best, best_load = None, 0.0
        for replica in variant.live:
            load = self.shared.in_flight(replica.slot) / max(1, replica.processes)
            if best is None or load < best_load:
                best, best_load = replica, load
        return best

    def copy_to_shadow(self, request_id: str, body: bytes) -> asyncio.Future | None:
        """Start a shadow copy of the request when its share says so; the future takes the
        live answer, (status, body), for the comparison."""
        shadow = self.shadow
        if shadow is None or self.rng.random() * 100.0 >= shadow.weight:
            return None
        replica = self.pick(shadow)
        if replica is None:
            return None
        live = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._shadow(shadow, replica, request_id, body, live))
        self.shadow_tasks.add(task)
        task.add_done_callback(self.shadow_tasks.discard)
        return live

    async def forward(
        self, replica: Replica, request_id: str, body: bytes
    ) -> tuple[int | None, bytes] | None:
        """(status, body) from `replica` (status None: no answer within the timeout); None when
        the link broke or the replica could not be reached (counted as its error)."""
        links = self.links.get(replica.id)
        if not links:
            return None
        client = links[0] if len(links) == 1 else min(links, key=lambda c: c.in_flight)
        counters, slot = self.counters, replica.slot
        loop = asyncio.get_running_loop()
        started = loop.time()
        counters.begin(slot)
        try:
            answer = await client.ask(request_id, body, self.timeout_s)
        except LinkBroken:
            counters.end(slot, 502, loop.time() - started)
            return None
        except BaseException:
            counters.end(slot, 499, loop.time() - started)
            raise
        if answer is None:
            counters.end(slot, 504, loop.time() - started)
            return None, b""
        counters.end(slot, answer[0], loop.time() - started)
        return answer

    async def _shadow(
        self,
        shadow: Variant,
        replica: Replica,
        request_id: str,
        body: bytes,
        live: asyncio.Future,
    ) -> None:
        """Send the copy to a shadow replica; compare its answer with the live one's."""
        started = asyncio.get_running_loop().time()
        answer = await self.forward(replica, f"{request_id}.shadow", body)
        seconds = asyncio.get_running_loop().time() - started
        status = None if answer is None else answer[0]
        theirs = await live
        differed = None
        if answer is not None and status is not None and theirs is not None:
            differed = answer != theirs
            self.counters.compared(replica.slot, differed=differed)
        if self.on_shadow is not None:
            self.on_shadow(shadow, replica, status, seconds, differed)


def sticky_share(routes: Routes, key: KnownKey | None, headers: dict[bytes, bytes]) -> float:
    """Where in [0, 100) a caller falls, the same every time: by its key id or a header's value
    (an empty one when missing), salted per rollout so each test splits callers afresh."""
    if routes.sticky_by == "key":
        value = key.id if key is not None else ""
    else:
        name = (routes.sticky_by or "").partition(":")[2]
        value = headers.get(name.encode("latin-1"), b"").decode("latin-1")
    salt = str(routes.extra.get("salt", ""))
    return zlib.crc32(f"{salt}:{value}".encode()) % 10_000 / 100.0
