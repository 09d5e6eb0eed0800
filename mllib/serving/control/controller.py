"""A deployment's controller (`python -m mllib.serving.control.controller FLEET_SPEC.json`): the
one process that runs a deployment's servers and decides what they do.

The stable server listens on the environment's port; its HTTP processes are stable's replicas.
During a rollout a candidate's server runs beside it, reached over links. Every tick (0.1 s) the
controller reads each server's counters (exact requests in flight, latency and errors per
replica), scales each variant (autoscale.py: it writes how many processes a server should run,
and the server starts or drains them), judges a canary against stable (judge.py) and rolls it
back when it is worse, moves a promotion to its next step, replaces a server that died, carries
out orders from commands (a canary, a promotion, a rollback) and writes the routes. Scaling
events, rollbacks and replacements go into the audit log (`mllib deploy history`) and into the
deployment's metrics (`mllib_replicas`, `mllib_scaling_events_total`). Its state is in
fleet.json, so a controller started again after a crash takes over the running servers.

Nothing stops while it holds requests: a replica leaves the routes before its server drains it,
a server drains (stops accepting, answers `Connection: close`, finishes) before it exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mllib.serving.control.agentservers import AgentReplicas, ReplicaFailed
from mllib.serving.control.autoscale import Autoscaler, Scaling, share_replicas
from mllib.serving.control.fleet import (
    Candidate,
    FleetSpec,
    answer_order,
    pending_orders,
    read_state,
    server_spec_from,
    write_state,
)
from mllib.serving.control.judge import figures as judged
from mllib.serving.control.judge import judge
from mllib.serving.control.servers import LocalServers, ServerState
from mllib.serving.counters import LOCAL, ZERO, Counters, Totals, quantile
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
from mllib.serving.spec import ServerSpec, write_status

log = logging.getLogger("mllib.serving.controller")
TICK_S = 0.1
DRAIN_MIN_S = 0.3  # a replica leaves the routes at least this long before it is stopped
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits before starting a failed server again


class StartFailed(Exception):
    """The deployment's stable server could not start."""


class OrderRefused(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


ROTATE_EVERY_S = 5.0  # how often the controller looks at server.log's size


class Controller:
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
        self.canary_since: float | None = None  # when a canary began taking requests
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
        self._last_write = 0.0
        self._dirty = True
        self._metrics: dict[str, Any] = {}
        self._stopping: list[threading.Thread] = []
        self._last_abort: dict[str, Any] | None = None  # the latest rollout taken down
        self._next_rotation = 0.0
        self.remote = (  # replicas on agent hosts (agentservers.py)
            AgentReplicas(spec, free_slot=self._free_slot, event=self._event)
            if spec.agents
            else None
        )

    # -- start and stop ---------------------------------------------------------------------
    def run(self) -> int:
        write_status(self.folder, "starting")
        self._init_metrics()
        try:
            if not self._adopt():
                self._start_fresh()
        except (StartFailed, ReplicaFailed) as exc:
            log.error(f"the deployment could not start: {exc}", extra={"event": "start_failed"})
            self._shutdown()
            write_status(self.folder, "failed", error=str(exc))
            return 3
        self.state = "ready"
        write_status(self.folder, "ready", url=self.spec.url)
        self._write_state(force=True)
        log.info(f"deployment ready at {self.spec.url}", extra={"event": "ready"})
        while not self.stop_requested.wait(TICK_S):
            try:
                self.tick(time.monotonic())
            except Exception:  # a bug here must not take the deployment down
                log.exception("controller tick failed", extra={"event": "controller_error"})
        self._shutdown()
        write_status(self.folder, "stopped")
        return 0

    def _start_fresh(self) -> None:
        self._write_routes()
        server = self._start_server(STABLE, self.stable, public=True)
        self.stable_id = server.id
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while True:
            outcome, why = self.backend.poll(server)
            if outcome == "ready":
                break
            if outcome in ("failed", "gone"):
                raise StartFailed(why or "the server did not start")
            if self.stop_requested.is_set():
                raise StartFailed("stopped while starting")
            if time.monotonic() > deadline:
                raise StartFailed(
                    f"not ready after {self.spec.ready_timeout_s:g}s ([deploy] ready_timeout_s)"
                )
            time.sleep(0.05)
        self._went_live(server)
        if self.remote is not None:
            self.remote.start_all(deadline)
            self._write_routes()

    def _start_server(
        self, variant: str, template: ServerSpec, *, public: bool, processes: int = 0
    ) -> ServerState:
        """Start a server of `template`: initial_processes, or `processes` where inline and
        more (a candidate sized to its share)."""
        server_id = f"s{self.next_id}"
        self.next_id += 1
        ceiling = max(self.spec.scaling.ceiling, template.workers)
        count = initial_processes(template, self.spec.scaling)
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

    def _shutdown(self) -> None:
        """Stop every server: each drains (stops accepting, finishes what it holds) first."""
        self.state = "stopping"
        self._write_state(force=True)
        if self.remote is not None:  # the gateway answers while they drain
            self.remote.stop_all(self.spec.stop_grace_s)
            self._write_routes()
        threads = [
            threading.Thread(target=self.backend.stop, args=(s, self.spec.stop_grace_s))
            for s in self.servers.values()
            if s.state not in ("stopped", "failed")
        ]
        for thread in threads:
            thread.start()
        for thread in threads + self._stopping:
            thread.join()
        for server in self.servers.values():
            server.state = "stopped"
        self.state = "stopped"
        self._write_state(force=True)

    def _adopt(self) -> bool:
        """Take over a deployment whose controller died, from fleet.json (False: start anew)."""
        from mllib.runtime.processes import is_alive

        state = read_state(self.folder)
        stable = state.get("servers", {}).get(state.get("stable_id", ""))
        if not stable or not is_alive(stable.get("pid"), stable.get("pid_ctime")):
            return False
        for item in state["servers"].values():
            server = ServerState.from_dict(item)
            if server.state in ("stopped", "failed"):
                continue
            self.servers[server.id] = server
            self.counters[server.id] = Counters.open(server.counters_path)
        self.stable_id = state["stable_id"]
        self.next_id = state.get("next_id", len(self.servers) + 1)
        self.generation = state.get("generation", 0)
        self.row = state.get("row") or self.row
        self.stable = server_spec_from(state["stable_spec"])
        if state.get("candidate"):
            self.candidate = Candidate.from_dict(state["candidate"])
            self.candidate_id = state.get("candidate_id")
        if self.remote is not None:
            self.remote.adopt(state.get("remote") or [], state.get("remote_next_id", 1))
        if state.get("successor") in self.servers:  # a promotion's stable server, starting
            self.successor = state["successor"]
        self._event("controller", "restarted", "took over the running servers")
        self._write_routes(force=True)
        return True

    # -- every tick -------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._orders()
        self._watch(now)
        figures = self._measure(now)
        self._judge(figures)
        self._promote(now)
        self._scale(now, figures)
        self._retire(now)
        if self.remote is not None and self.remote.tick(now):
            self._dirty = True
        self._write_routes()
        self._write_state()
        self._rotate_log(now)

    def _rotate_log(self, now: float) -> None:
        """Past [deploy] log_max_mb, server.log is copied aside and emptied (every few seconds
        at most: the check is one stat)."""
        from mllib.serving.control.paths import LOG_FILE
        from mllib.serving.logs import rotate

        if now < self._next_rotation:
            return
        self._next_rotation = now + ROTATE_EVERY_S
        path = self.folder / LOG_FILE
        try:
            if rotate(path, max_bytes=self.spec.log_max_mb * 1e6, keep=self.spec.log_keep):
                log.info(f"{LOG_FILE} rotated", extra={"event": "log_rotated"})
        except OSError as exc:  # a full disk: serving goes on; the next turn tries again
            log.warning(f"could not rotate {LOG_FILE}: {exc}", extra={"event": "log_rotate_failed"})

    def _watch(self, now: float) -> None:
        """Servers that became ready, failed to start, or died."""
        if self.restart_stable_at is not None and now >= self.restart_stable_at:
            self.restart_stable_at = None
            self._start_stable_replacement(self.servers.get(self.stable_id))
        for server in list(self.servers.values()):
            if server.state in ("stopped", "failed", "retiring", "dead"):
                continue
            outcome, why = self.backend.poll(server)
            if server.state == "starting":
                if outcome == "ready":
                    self._went_live(server)
                    if server.id == self.successor:
                        self._hand_over(server)
                    elif server.id in self.replacing:
                        self._retire_server(self.replacing.pop(server.id), now)
                elif outcome in ("failed", "gone"):
                    self._start_failed(server, why or "it did not start", now)
            elif outcome in ("gone", "failed"):
                self._replace(server, why or "it died", now)

    def _start_failed(self, server: ServerState, why: str, now: float) -> None:
        server.state, server.error = "failed", why
        self._forget(server)
        log.error(
            f"server {server.id} failed to start: {why}",
            extra={"event": "server_failed", "replica": server.id},
        )
        if server.id == self.candidate_id:
            self._abort(f"its server failed to start: {why}", auto=True)
        elif server.id == self.successor:
            self.successor = None
            self._event("promote", "failed", f"{server.version} could not take over: {why}")
        elif server.id in self.replacing:  # the dead one's orphans may still serve: try again
            self.stable_id = self.replacing.pop(server.id)
            self.failures.append(now)
            self.restart_stable_at = now + self._retry_s()

    def _replace(self, server: ServerState, why: str, now: float) -> None:
        """A server died: start another in its place. A stable server's replacement takes over
        the port; what the dead one left running (its HTTP processes outlive it) is drained
        only once the new one answers."""
        if server.id == self.candidate_id and self.candidate is not None:
            self._forget(server)
            threading.Thread(target=self.backend.stop, args=(server, 1.0), daemon=True).start()
            new = self._start_server(
                self.candidate.variant,
                self.candidate.spec,
                public=False,
                processes=self._share(self.candidate),
            )
            self.candidate_id = new.id
        elif server.id == self.stable_id:
            new = self._start_stable_replacement(server)
        else:
            self._forget(server)
            return
        self._event(
            "replace", "ok", f"server {server.id} on {server.host}: {why}; started {new.id}",
            variant=new.variant,
        )  # fmt: skip

    def _start_stable_replacement(self, dead: ServerState | None) -> ServerState:
        if dead is not None:
            dead.state = "dead"
        new = self._start_server(STABLE, self.stable, public=True)
        if dead is not None:
            self.counters[new.id].desired = self.counters[dead.id].desired
            self.replacing[new.id] = dead.id
        self.stable_id = new.id
        return new

    def _forget(self, server: ServerState) -> None:
        self.servers.pop(server.id, None)
        self.counters.pop(server.id, None)
        self._dirty = True

    # -- measuring ----------------------------------------------------------------------------
    def _stable_counters(self) -> Counters | None:
        return self.counters.get(self.stable_id)

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
        for name, server_id in targets:
            server, counters = self.servers.get(server_id), self.counters.get(server_id)
            data = figures.get(name)
            if server is None or counters is None or server.state != "live" or data is None:
                continue
            template = self.stable if name == STABLE else self.candidate.spec  # type: ignore[union-attr]
            if not template.inline:
                continue  # worker mode: its LitServe workers are fixed (see the README)
            if name == STABLE and self.failures and now - self.failures[-1] < self._retry_s():
                continue
            scaler = self.scalers.get(name)
            if scaler is None:
                scaler = self.scalers[name] = Autoscaler(self._scaling(server))
            current = counters.desired
            p99 = quantile(0.99, data["second"].buckets)
            decision = scaler.observe(now, in_flight=data["in_flight"], p99_s=p99, replicas=current)
            if decision is None:
                continue
            if decision.direction == "up" or name == STABLE:
                counters.desired = decision.replicas  # the server drains its newest process
            else:
                self._shrink_candidate(server, decision.replicas, now)
            detail = {
                "variant": name,
                "from": current,
                "to": decision.replicas,
                "in_flight": data["in_flight"],
                "p99_ms": None if p99 is None else round(p99 * 1000, 2),
            }
            reason = f"{name} {current} → {decision.replicas} replicas: {decision.reason}"
            self._event("scale", decision.direction, reason, **detail)
            self._metrics["events"].labels(
                self.spec.env, self.model, name, decision.direction
            ).inc()

    def _share(self, candidate: Candidate) -> int:
        """Replicas for the candidate's share of requests, beside stable's replicas now."""
        stable = self.counters.get(self.stable_id)
        return share_replicas(
            stable.desired if stable is not None else 1,
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
            slot = server.slots.get(index) if server else None
            busy = counters is not None and slot is not None and counters.in_flight(slot) > 0
            if now - since < DRAIN_MIN_S or (busy and now - since < self.spec.timeout_s + 1):
                continue
            del self.leaving[replica_id]
            if server is None:
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

    # -- rollouts -----------------------------------------------------------------------------
    def _judge(self, figures: dict[str, dict[str, Any]]) -> None:
        """Judge a canary over the latest window, leaving out its first window (its first
        requests pay for cold starts: imports, caches, connections)."""
        candidate = self.candidate
        if candidate is not None and candidate.variant == SHADOW and SHADOW in figures:
            window = figures[SHADOW]["window"]
            candidate.verdict = {
                "failing": None,
                "shadow": {
                    **judged(window),
                    "compared": window.compared,
                    "differed": window.differed,
                },
                "stable": judged(figures[STABLE]["window"]),
            }
        if candidate is None or candidate.variant != CANARY or CANARY not in figures:
            self.canary_since = None
            return
        now = time.monotonic()
        window = self.spec.rollout.window_s
        if self.canary_since is None:
            self.canary_since = now
        if now - self.canary_since < window:
            return  # its first window is its warm-up, never judged
        reading = self.history[-1][1]
        since = self.canary_since + window
        canary = self._window(now, window, figures[CANARY]["ids"], reading, since)
        own = self._window(now, window, [f"own:{self.candidate_id}"], reading, since)
        if own.requests:
            # Its latency as its own processes measured it, as stable's is (the hop between
            # the two servers is the same whichever version runs, and under a loaded CPU it
            # alone made a sound candidate look slower); its requests and errors as the
            # stable server saw them (a candidate that cannot answer shows there).
            canary = dataclasses.replace(canary, buckets=own.buckets)
        verdict = judge(
            self.spec.rollout,
            canary=canary,
            stable=figures[STABLE]["window"],
            objective_s=self.spec.scaling.p99_objective_ms / 1000,
        )
        candidate.verdict = {
            "failing": verdict.failing,
            "canary": verdict.canary,
            "stable": verdict.stable,
        }
        if verdict.breached and self.spec.rollout.auto_rollback:
            self._abort(verdict.failing or "worse than stable", auto=True)

    def _abort(self, why: str, *, auto: bool, user: str | None = None) -> dict[str, Any]:
        """Traffic back on stable at once (new routes now, not at the end of the tick), the
        candidate's server drained and stopped; recorded, and on prod a strike if automatic."""
        candidate, server_id = self.candidate, self.candidate_id
        assert candidate is not None
        self.candidate = None
        self.scalers.pop(candidate.variant, None)
        now = time.monotonic()
        self._retire_server(self.candidate_id, now)
        self.candidate_id = None
        if self.successor is not None:  # a promotion's stable server, still starting, goes too
            self._retire_server(self.successor, now)
            self.successor = None
        self._write_routes()
        servable = candidate.servable
        cooldown = None
        if auto and self.spec.env == "prod":
            cooldown = self._strike(candidate.user, servable.model)
        self._event(
            "rollback",
            "auto" if auto else "ok",
            f"{candidate.mode} of {servable.label} taken down: {why}",
            user=candidate.user if auto else user,
            model_version=servable.version,
            cooldown_s=cooldown,
        )
        self._last_abort = {
            "label": servable.label,
            "server": server_id,
            "why": why,
            "at": time.time(),
        }
        return {"rolled_back": servable.label, "cooldown_s": cooldown}

    def _strike(self, user: str, model: str) -> float:
        from mllib.registry.db import Registry
        from mllib.serving.clock import SystemClock
        from mllib.serving.control import policy
        from mllib.serving.control.settings import DeploySettings

        reg = Registry.open(Path(self.spec.registry_path))
        try:
            return policy.strike(
                reg, SystemClock(), DeploySettings(**self.spec.cooldown), user, model
            )
        finally:
            reg.close()

    def _promote(self, now: float) -> None:
        candidate = self.candidate
        if candidate is None or not candidate.steps or self.successor:
            return
        if candidate.next_step_at is None or now < candidate.next_step_at:
            return
        if candidate.verdict.get("failing") or not self._live_candidate_replicas():
            return  # held back: the judge decides, or it has nothing to take traffic yet
        self._step(candidate, now)

    def _step(self, candidate: Candidate, now: float) -> None:
        weight = candidate.steps.pop(0)
        if weight >= 100:
            self._start_successor(candidate)
            return
        if candidate.variant == SHADOW:  # a shadow promoted takes real traffic from now on
            candidate.variant = CANARY
            self.scalers.pop(SHADOW, None)
        candidate.weight = weight
        candidate.next_step_at = now + candidate.interval_s
        counters = self.counters.get(self.candidate_id or "")
        if counters is not None and candidate.spec.inline:  # its replicas grow with its share
            counters.desired = max(counters.desired, self._share(candidate))
        self._dirty = True
        self._event(
            "promote", "step", f"{candidate.servable.label} now takes {weight:g}% of requests",
            model_version=candidate.servable.version, weight=weight,
        )  # fmt: skip

    def _start_successor(self, candidate: Candidate) -> None:
        """The candidate becomes stable: a stable server of it starts on the port; once it
        answers, the old stable server and the candidate's drain (_hand_over)."""
        server = self._start_server(STABLE, candidate.spec, public=True)
        self.counters[server.id].desired = self.counters[self.stable_id].desired
        self.successor = server.id
        log.info(
            f"promoting {candidate.servable.label}: starting its stable server {server.id}",
            extra={"event": "promote"},
        )

    def _hand_over(self, server: ServerState) -> None:
        candidate = self.candidate
        assert candidate is not None
        now = time.monotonic()
        previous = self.stable
        self._retire_server(self.stable_id, now)
        self._retire_server(self.candidate_id, now)
        self.stable_id, self.successor = server.id, None
        self.stable, self.candidate, self.candidate_id = candidate.spec, None, None
        self.scalers = {}
        self.history = []
        self._write_routes()
        self.row = self._record_promotion(candidate)
        self._event(
            "promote", "ok",
            f"{candidate.servable.label} is stable (100%); {previous.servable.label} drains",
            user=candidate.user, model_version=candidate.servable.version,
        )  # fmt: skip

    def _record_promotion(self, candidate: Candidate) -> str:
        from mllib.registry.db import Registry
        from mllib.serving.control import records

        reg = Registry.open(Path(self.spec.registry_path))
        try:
            return records.promoted(reg, self.row, candidate.servable, candidate.user)
        finally:
            reg.close()

    def _live_candidate_replicas(self) -> list[Replica]:
        return [r for v, r in self._replicas(with_variant=True) if v != STABLE and not r.draining]

    # -- orders from commands -----------------------------------------------------------------
    def _orders(self) -> None:
        for path, order in pending_orders(self.folder):
            try:
                result = self._carry_out(order)
            except OrderRefused as exc:
                answer_order(path, ok=False, error=str(exc), hint=exc.hint)
            except Exception as exc:
                log.exception(
                    f"order {order.get('action')} failed", extra={"event": "order_failed"}
                )
                answer_order(path, ok=False, error=f"{type(exc).__name__}: {exc}")
            else:
                answer_order(path, ok=True, result=result)

    def _carry_out(self, order: dict[str, Any]) -> Any:
        action = order["action"]
        env = self.spec.env
        if action == "candidate":
            return self._order_candidate(order)
        if action == "promote":
            return self._order_promote(order)
        if action == "abort":
            if self.candidate is None:
                raise OrderRefused(f"No canary, A/B test or shadow is running on {env}.")
            return self._abort(
                order.get("reason") or "rolled back by hand", auto=False, user=order.get("user")
            )
        raise OrderRefused(f"unknown order {action!r}")

    def _order_candidate(self, order: dict[str, Any]) -> dict[str, Any]:
        env = self.spec.env
        if self.candidate is not None or self.successor:
            label = self.candidate.servable.label if self.candidate else "a version"
            raise OrderRefused(
                f"{label} is already being rolled out on {env}",
                hint=f"Promote it or roll it back first: mllib deploy promote|rollback --env {env}",
            )
        spec = server_spec_from(order["spec"])
        variant = SHADOW if order["mode"] == "shadow" else CANARY
        self.candidate = Candidate(
            variant=variant,
            mode=order["mode"],
            spec=spec,
            weight=float(order["weight"]),
            user=order["user"],
            started_at=time.time(),
            sticky_by=order.get("sticky_by"),
        )
        server = self._start_server(
            variant, spec, public=False, processes=self._share(self.candidate)
        )
        self.candidate_id = server.id
        sticky = f", sticky by {order['sticky_by']}" if order.get("sticky_by") else ""
        self._event(
            "rollout", "started", f"{order['mode']} of {spec.servable.label}: {order['weight']:g}%{sticky}",
            user=order["user"], model_version=spec.servable.version,
        )  # fmt: skip
        return {"variant": variant, "server": server.id}

    def _order_promote(self, order: dict[str, Any]) -> dict[str, Any]:
        env = self.spec.env
        candidate = self.candidate
        if candidate is None:
            raise OrderRefused(
                f"Nothing is being rolled out on {env} to promote.",
                hint=f"Start a canary first: mllib deploy MODEL:VERSION --env {env} --canary 10",
            )
        failing = candidate.verdict.get("failing")
        if failing:
            raise OrderRefused(
                f"Refused: the canary is failing ({failing})",
                hint=f"Roll it back: mllib deploy rollback --env {env}",
            )
        if not self._live_candidate_replicas():
            raise OrderRefused(
                f"{candidate.servable.label} has no replica ready yet; try again in a moment."
            )
        current = candidate.weight if candidate.variant == CANARY else 0.0
        candidate.steps = [s for s in order["steps"] if s > current] or [100.0]
        candidate.interval_s = float(order["interval_s"])
        self._step(candidate, time.monotonic())
        return {"weight": candidate.weight, "steps_left": list(candidate.steps)}

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
        for replica in self.remote.routes() if self.remote is not None else ():
            found.append((STABLE, replica) if with_variant else replica)
        return found

    def _free_slot(self) -> int:
        used = {slot for s in self.servers.values() for slot in s.slots.values()}
        used |= self.remote.slots() if self.remote is not None else set()
        return next(i for i in range(1, self.spec.slots) if i not in used)

    def _routes(self) -> Routes:
        stable = Variant(
            STABLE, self.stable.servable.version_label, 100.0, (), self.stable.servable.run_id
        )
        by_variant: dict[str, list[Replica]] = {}
        for variant, replica in self._replicas(with_variant=True):
            by_variant.setdefault(variant, []).append(replica)
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
            "row": self.row,
            "stable_spec": dataclasses.asdict(self.stable),
            "candidate": candidate.to_dict() if candidate else None,
            "last_abort": self._last_abort,
            "servers": {k: dataclasses.asdict(v) for k, v in self.servers.items()},
            "remote": self.remote.to_state() if self.remote is not None else [],
            "remote_next_id": self.remote.next_id if self.remote is not None else 1,
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
                counters = self.counters.get(server.id)
                if counters is not None and server.state == "live" and server.variant in counts:
                    counts[server.variant] += sum(1 for i in counters.infos() if i.state == "ready")
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mllib.serving.control.controller FLEET_SPEC.json", file=sys.stderr)
        return 2
    spec = FleetSpec.read(Path(args[0]))
    from mllib.serving import logs

    logs.configure(
        logs.JSON,
        {"env": spec.env, "model": spec.stable.servable.model, "deployment": spec.deployment},
    )
    controller = Controller(spec)

    def handler(signum: int, frame: Any) -> None:
        controller.stop_requested.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return controller.run()


if __name__ == "__main__":
    sys.exit(main())
