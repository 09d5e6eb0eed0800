"""A deployment as its controller holds it: its servers and their counters, the replicas they
run, the routes and fleet.json written from them, events and metrics. The controller's parts
(scaling.py, candidates.py, orders.py, controller.py) each add their own behaviour to it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from mllib.serving.control.agentservers import AgentReplicas
from mllib.serving.control.autoscale import Autoscaler, Scaling
from mllib.serving.control.fleet import Candidate, FleetSpec, write_state
from mllib.serving.control.reporting import Reporter
from mllib.serving.control.servers import LocalServers, ServerState
from mllib.serving.control.warmup import Warmup
from mllib.serving.counters import Counters, Totals
from mllib.serving.routes import (
    CANARY,
    ROUTES_FILE,
    SHADOW,
    STABLE,
    Replica,
    Routes,
    Variant,
    process_address,
)
from mllib.serving.spec import ServerSpec

log = logging.getLogger("mllib.serving.controller")


class LiveDeployment:
    """What the controller holds of a running deployment, and what it writes of it."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.folder = Path(spec.dir)
        self.backend = LocalServers(self.folder, spec.deployment, Path.cwd(), spec.slots)
        self.servers: dict[str, ServerState] = {}
        self.counters: dict[str, Counters] = {}
        self.stable_id = ""
        self.stable = spec.stable  # the stable replicas' spec (a promotion changes it)
        self.candidate: Candidate | None = None
        self.candidate_id: str | None = None
        self.successor: str | None = None  # the stable server a promotion is starting
        self.replacing: dict[str, str] = {}  # a stable server starting -> the dead one it replaces
        self.restart_stable_at: float | None = None  # after a replacement failed to start
        self.warmup: Warmup | None = None  # a canary's cold start, left out of its judging
        self.row = spec.deployment  # the deployments row of what stable serves
        self.next_id = 1
        self.generation = 0
        self.leaving: dict[str, float] = {}  # replica id -> when it left the routes
        self.scalers: dict[str, Autoscaler] = {}
        self.history: list[tuple[float, dict[str, Totals]]] = []
        self.failures: list[float] = []
        self.stop_requested = threading.Event()
        self.state = "starting"
        self._routes_key: Any = None
        self._routed: dict[str, list[str]] = {}  # per variant, the live replicas routes name
        self._last_write = 0.0
        self._dirty = True
        self._metrics: dict[str, Any] = {}
        self._stopping: list[threading.Thread] = []
        self._last_abort: dict[str, Any] | None = None  # the latest rollout taken down
        self._next_rotation = 0.0
        self.reporter = Reporter(spec.registry_path, spec.team_server)  # what it promotes
        self.remote = (  # replicas on agent hosts (agentservers.py)
            AgentReplicas(spec, free_slot=self._free_slot, event=self._event)
            if spec.agents
            else None
        )

    def _start_server(
        self, variant: str, template: ServerSpec, *, public: bool, processes: int = 0
    ) -> ServerState:
        """Start a server of `template`: initial_processes, or `processes` where inline and
        more (a candidate sized to its share). With replicas on agents, the stable server here
        is the gateway: its `workers` processes, not min_replicas (those run on the agents)."""
        server_id = f"s{self.next_id}"
        self.next_id += 1
        ceiling = max(self.spec.scaling.ceiling, template.workers)
        count = initial_processes(template, self.spec.scaling)
        if public and self.remote is not None:
            count = template.workers
        if template.inline:
            count = min(ceiling, max(count, processes))
        server = self.backend.start(
            template,
            server=server_id,
            variant=variant,
            processes=count,
            ceiling=ceiling,
            public=(self.spec.host, self.spec.port) if public else None,
        )
        self.servers[server_id] = server
        counters = self.counters[server_id] = Counters.open(server.counters_path)
        counters.generation = self.generation
        counters.desired = count
        self._dirty = True
        return server

    def _went_live(self, server: ServerState) -> None:
        server.state = "live"
        server.ready_at = time.time()
        self._dirty = True
        log.info(
            f"server {server.id} ({server.variant} v{server.version}) is live",
            extra={"event": "server_ready", "replica": server.id},
        )

    def _forget(self, server: ServerState) -> None:
        self.servers.pop(server.id, None)
        self.counters.pop(server.id, None)
        self._dirty = True

    # -- counters -----------------------------------------------------------------------------
    def _stable_counters(self) -> Counters | None:
        return self.counters.get(self.stable_id)

    # -- routes, state, events ----------------------------------------------------------------
    def _replicas(self, with_variant: bool = False) -> list:
        """Replicas reached over links: each ready HTTP process of a candidate's server (those
        leaving are kept, draining, until nothing is in flight to them)."""
        found = []
        for server in self.servers.values():
            if server.public or server.state not in ("live", "retiring"):
                continue
            counters = self.counters.get(server.id)
            if counters is not None and server.state == "live":
                for info in counters.infos():
                    if info.state == "ready" and str(info.index) not in server.slots:
                        server.slots[str(info.index)] = self._free_slot()
            for index, slot in sorted(server.slots.items(), key=lambda kv: int(kv[0])):
                replica = Replica(
                    f"{server.id}.{index}",
                    slot,
                    process_address(server.link, int(index)),
                    server.token,
                    draining=f"{server.id}.{index}" in self.leaving,
                    host=server.host,
                )
                found.append((server.variant, replica) if with_variant else replica)
        for variant, replica in self.remote.routes() if self.remote is not None else ():
            found.append((variant, replica) if with_variant else replica)
        return found

    def _free_slot(self) -> int:
        used = {slot for s in self.servers.values() for slot in s.slots.values()}
        used |= self.remote.slots() if self.remote is not None else set()
        return next(i for i in range(1, self.spec.slots) if i not in used)

    def _routes(self) -> Routes:
        by_variant: dict[str, list[Replica]] = {}
        for variant, replica in self._replicas(with_variant=True):
            by_variant.setdefault(variant, []).append(replica)
        stable = Variant(  # its replicas reached over links: those on agents
            STABLE, self.stable.servable.version_label, 100.0,
            tuple(by_variant.get(STABLE, ())), self.stable.servable.run_id,
        )  # fmt: skip
        variants = [stable]
        candidate = self.candidate
        for name in (CANARY, SHADOW):
            replicas = tuple(by_variant.get(name, ()))
            if not replicas:
                continue
            live = candidate is not None and candidate.variant == name
            version = candidate.servable.version_label if live else replicas[0].id
            weight = candidate.weight if live else 0.0
            variants.append(Variant(name, version, weight, replicas))
        sticky = candidate.sticky_by if candidate else None
        extra: dict[str, Any] = {"salt": candidate.salt} if candidate else {}
        if self.remote is not None:
            extra["placement"] = "agents"  # the gateway's own process answers only as a fallback
        return Routes(0, tuple(variants), sticky_by=sticky, model=self.model, extra=extra)

    @property
    def model(self) -> str:
        return self.stable.servable.model

    def _write_routes(self, force: bool = False) -> None:
        routes = self._routes()
        key = dataclasses.astuple(routes)
        if key == self._routes_key and not force:
            return
        self.generation += 1
        routes.with_generation(self.generation).write(self.folder / ROUTES_FILE)
        for counters in self.counters.values():
            counters.generation = self.generation
        self._routes_key = key
        self._routed = {  # what the gateway's processes route to from their next request on
            v.name: [r.id for r in v.live] for v in routes.variants if v.live and v.weight > 0
        }
        self._dirty = True

    def _public_state(self) -> dict[str, Any]:
        candidate = self.candidate
        processes = {}
        for server_id, counters in self.counters.items():
            processes[server_id] = [
                {**dataclasses.asdict(info), "in_flight": counters.in_flight_of(info.index)}
                for info in counters.infos()
            ]
        return {
            "state": self.state,
            "controller_pid": os.getpid(),
            "stable_id": self.stable_id,
            "candidate_id": self.candidate_id,
            "successor": self.successor,
            "next_id": self.next_id,
            "generation": self.generation,
            "routed": self._routed,
            "row": self.row,
            "stable_spec": dataclasses.asdict(self.stable),
            "candidate": candidate.to_dict() if candidate else None,
            "last_abort": self._last_abort,
            "servers": {k: dataclasses.asdict(v) for k, v in self.servers.items()},
            "remote": self.remote.to_state() if self.remote is not None else [],
            "remote_next_id": self.remote.next_id if self.remote is not None else 1,
            "remote_templates": self.remote.templates_state() if self.remote is not None else {},
            "processes": processes,
            "desired": {k: c.desired for k, c in self.counters.items()},
            "updated": time.time(),
        }

    def _write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or self._dirty or now - self._last_write >= 0.5):
            return
        write_state(self.folder, self._public_state())
        self._dirty = False
        self._last_write = now
        replicas = self._metrics.get("replicas")
        if replicas is not None:
            counts = {STABLE: 0, CANARY: 0, SHADOW: 0}
            for server in self.servers.values():
                if server.public and self.remote is not None:
                    continue  # the gateway: its replicas are on the agents
                counters = self.counters.get(server.id)
                if counters is not None and server.state == "live" and server.variant in counts:
                    counts[server.variant] += sum(1 for i in counters.infos() if i.state == "ready")
            if self.remote is not None:
                for name in counts:
                    counts[name] += self.remote.live(name)
            for name, count in counts.items():
                replicas.labels(self.spec.env, self.model, name).set(count)

    def _event(
        self, action: str, result: str, reason: str, *, user: str | None = None,
        model_version: int | None = None, **detail: Any,
    ) -> None:  # fmt: skip
        """Into the audit log (`mllib deploy history`) and the server log."""
        from mllib.serving.control import events

        version = self.stable.servable.version if model_version is None else model_version
        events.record(
            self.spec, log, action=action, result=result, reason=reason, row=self.row,
            model=self.model, version=version, user=user, **detail,
        )  # fmt: skip

    def _init_metrics(self) -> None:
        """mllib_replicas and mllib_scaling_events_total, in the deployment's shared metrics
        folder: its servers' /metrics show them beside the requests'."""
        folder = self.folder / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        from prometheus_client import Counter, Gauge

        labels = ("env", "model", "variant")
        events = Counter(
            "mllib_scaling_events", "Replicas added (up) or removed (down) by the controller.",
            [*labels, "direction"], registry=None,
        )  # fmt: skip
        replicas = Gauge(
            "mllib_replicas", "Replicas of each variant ready to answer.", labels,
            multiprocess_mode="mostrecent", registry=None,
        )  # fmt: skip
        for name in (STABLE, CANARY, SHADOW):
            for direction in ("up", "down"):
                events.labels(self.spec.env, self.model, name, direction)  # 0 from the start
        self._metrics = {"events": events, "replicas": replicas}


def initial_processes(template: ServerSpec, scaling: Scaling) -> int:
    """HTTP processes a server starts with: min_replicas (inline: each process is a replica),
    or the processes its spec asks for where that is more."""
    return max(scaling.min_replicas, template.workers) if template.inline else template.workers
