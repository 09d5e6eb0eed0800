"""The controller's scaling: what each variant answered (its counters read every tick, kept for
the judging window), how many replicas each should run (autoscale.py decides), and replicas
taken out of the routes and stopped once nothing is in flight to them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from mllib.serving.control.agentservers import AgentReplicas
from mllib.serving.control.autoscale import Autoscaler, Decision, Scaling, share_replicas
from mllib.serving.control.fleet import Candidate
from mllib.serving.control.live import LiveDeployment
from mllib.serving.control.servers import ServerState
from mllib.serving.counters import LOCAL, ZERO, Totals, quantile
from mllib.serving.routes import SHADOW, STABLE

log = logging.getLogger("mllib.serving.controller")
DRAIN_MIN_S = 0.3  # a replica leaves the routes at least this long before it is stopped
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits before starting a failed server again


class ScalingLoop(LiveDeployment):
    """Measuring each variant's traffic, scaling it, retiring replicas that left the routes."""

    # -- measuring ----------------------------------------------------------------------------
    def _measure(self, now: float) -> dict[str, dict[str, Any]]:
        """Per variant: requests in flight now, and the traffic of the last second and of the
        judging window, from the stable server's counters (its own predictions, and what it
        forwarded to each replica)."""
        counters = self._stable_counters()
        if counters is None:
            return {}
        reading = {"local": counters.totals(LOCAL)}
        for replica in self._replicas():
            reading[replica.id] = counters.totals(replica.slot)
        own = self.counters.get(self.candidate_id or "")
        if own is not None:  # what the candidate's processes measured of their own answers
            reading[f"own:{self.candidate_id}"] = own.totals(LOCAL)
        self.history.append((now, reading))
        keep = max(self.spec.rollout.window_s, 1.0) + 0.5
        while self.history and now - self.history[0][0] > keep:
            self.history.pop(0)
        variants: dict[str, list[str]] = {STABLE: ["local"]}
        for variant, replica in self._replicas(with_variant=True):
            variants.setdefault(variant, []).append(replica.id)
        figures = {}
        for name, ids in variants.items():
            figures[name] = {
                "ids": ids,
                "in_flight": sum(reading[i].in_flight for i in ids if i in reading),
                "second": self._window(now, 1.0, ids, reading),
                "window": self._window(now, self.spec.rollout.window_s, ids, reading),
            }
        return figures

    def _window(
        self,
        now: float,
        seconds: float,
        ids: list[str],
        reading: dict,
        not_before: float | None = None,
    ) -> Totals:
        """What `ids` answered in the last `seconds` (and not before `not_before`)."""
        start = now - seconds if not_before is None else max(now - seconds, not_before)
        earlier = next((r for t, r in self.history if t >= start), reading)
        total = ZERO
        for ident in ids:
            if ident in reading:
                total = total.plus(reading[ident].minus(earlier.get(ident, reading[ident])))
        return total

    # -- scaling ------------------------------------------------------------------------------
    def _scale(self, now: float, figures: dict[str, dict[str, Any]]) -> None:
        if self.stop_requested.is_set() or self.successor:
            return
        targets = [(STABLE, self.stable_id)]
        if self.candidate is not None and self.candidate_id:
            targets.append((self.candidate.variant, self.candidate_id))
        gateway = self.servers.get(self.stable_id)  # its counters measure every variant
        for name, server_id in targets:
            data = figures.get(name)
            if gateway is None or gateway.state != "live" or data is None:
                continue
            if name == STABLE and self.failures and now - self.failures[-1] < self._retry_s():
                continue
            if self.remote is not None:  # each variant's replicas are on the agents
                if name != STABLE and not self.remote.live(name):
                    continue  # a candidate's first replicas are still starting
                self._scale_variant_on_agents(self.remote, name, data, now)
                continue
            server, counters = self.servers.get(server_id), self.counters.get(server_id)
            if server is None or counters is None or server.state != "live":
                continue
            template = self.stable if name == STABLE else self.candidate.spec  # type: ignore[union-attr]
            if not template.inline:
                continue  # worker mode: its LitServe workers are fixed (see the README)
            decision = self._decide(name, self._scaling(server), counters.desired, data, now)
            if decision is None:
                continue
            current = counters.desired
            if decision.direction == "up" or name == STABLE:
                counters.desired = decision.replicas  # the server drains its newest process
            else:
                self._shrink_candidate(server, decision.replicas, now)
            self._scaled(name, current, decision, data, [])

    def _scale_variant_on_agents(
        self, remote: AgentReplicas, name: str, data: dict[str, Any], now: float
    ) -> None:
        """Scale one variant's replicas on the agents (a candidate's as stable's, each on its
        own in-flight load): start them where there is most room, or drain some."""
        current = remote.count(name)
        scaling = dataclasses.replace(self.spec.scaling, max_replicas=remote.ceiling())
        decision = self._decide(name, scaling, current, data, now)
        if decision is None:
            return
        placed = self._scale_on_agents(remote, name, current, decision.replicas, now)
        self._scaled(name, current, decision, data, placed)

    def _decide(
        self, name: str, scaling: Scaling, current: int, data: dict[str, Any], now: float
    ) -> Decision | None:
        """The autoscaler of variant `name` (made on first use) on what it measured now."""
        scaler = self.scalers.get(name)
        if scaler is None:
            scaler = self.scalers[name] = Autoscaler(scaling)
        p99 = quantile(0.99, data["second"].buckets)
        return scaler.observe(now, in_flight=data["in_flight"], p99_s=p99, replicas=current)

    def _scaled(
        self, name: str, current: int, decision: Decision, data: dict[str, Any], placed: list[str]
    ) -> None:
        """A scaling event: into `deploy history` (with where replicas went) and the metrics."""
        p99 = quantile(0.99, data["second"].buckets)
        detail = {
            "variant": name,
            "from": current,
            "to": decision.replicas,
            "in_flight": data["in_flight"],
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
        }
        reason = f"{name} {current} → {decision.replicas} replicas: {decision.reason}"
        reason += "".join(f"; {where}" for where in placed)
        self._event("scale", decision.direction, reason, **detail)
        self._metrics["events"].labels(self.spec.env, self.model, name, decision.direction).inc()

    def _scale_on_agents(
        self, remote: AgentReplicas, variant: str, current: int, wanted: int, now: float
    ) -> list[str]:
        """Start replicas of `variant` on the agents with the most free capacity, or drain some
        (each is stopped on its agent once nothing is in flight to it, _retire); where each
        went."""
        placed = [remote.grow(variant) for _ in range(wanted - current)]
        for _ in range(current - wanted):
            leaving = remote.shrink(variant)
            if leaving is not None:
                self.leaving.setdefault(leaving.id, now)
                placed.append(f"{leaving.id} on agent {leaving.agent} drains")
        self._dirty = True
        return placed

    def _share(self, candidate: Candidate) -> int:
        """Replicas for the candidate's share of requests, beside stable's replicas now."""
        stable = self.counters.get(self.stable_id)
        if self.remote is not None:  # stable's replicas are on agents (the gateway's aside)
            replicas = self.remote.count(STABLE)
        else:
            replicas = stable.desired if stable is not None else 1
        return share_replicas(
            replicas,
            candidate.weight,
            self.spec.scaling,
            copies=candidate.variant == SHADOW,
        )

    def _scaling(self, server: ServerState) -> Scaling:
        return dataclasses.replace(self.spec.scaling, max_replicas=server.ceiling)

    def _shrink_candidate(self, server: ServerState, count: int, now: float) -> None:
        """Take the candidate's newest processes out of the routes; once nothing is in flight
        to them (_retire), its server is told to run fewer and drains them."""
        ready = sorted(int(i) for i in server.slots)
        for index in ready[count:]:
            self.leaving.setdefault(f"{server.id}.{index}", now)

    def _retry_s(self) -> float:
        return RETRY_S[min(len(self.failures), len(RETRY_S)) - 1]

    def _retire(self, now: float) -> None:
        """Replicas that left the routes, and retiring servers, once nothing is in flight."""
        counters = self._stable_counters()
        for replica_id, since in list(self.leaving.items()):
            server_id, _, index = replica_id.partition(".")
            server = self.servers.get(server_id)
            if server is not None:
                slot = server.slots.get(index)
            else:  # a replica on an agent, scaled down
                slot = self.remote.leaving_slot(replica_id) if self.remote is not None else None
            busy = counters is not None and slot is not None and counters.in_flight(slot) > 0
            if now - since < DRAIN_MIN_S or (busy and now - since < self.spec.timeout_s + 1):
                continue
            del self.leaving[replica_id]
            if server is None:
                if self.remote is not None:
                    self.remote.retire(replica_id, self.spec.stop_grace_s)
                continue
            server.slots.pop(index, None)
            if server.state == "live" and server.id != self.stable_id:
                self.counters[server.id].desired = max(1, self.counters[server.id].desired - 1)
        for server in list(self.servers.values()):
            if server.state != "retiring":
                continue
            if any(r.startswith(server.id + ".") for r in self.leaving):
                continue
            self._forget(server)
            thread = threading.Thread(
                target=self.backend.stop, args=(server, self.spec.stop_grace_s), daemon=True
            )
            thread.start()
            self._stopping = [t for t in self._stopping if t.is_alive()] + [thread]

    def _retire_server(self, server_id: str | None, now: float) -> None:
        server = self.servers.get(server_id or "")
        if server is None:
            return
        server.state = "retiring"
        for index in server.slots:
            self.leaving.setdefault(f"{server.id}.{index}", now)
        self._dirty = True
