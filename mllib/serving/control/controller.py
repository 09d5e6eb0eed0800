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

The controller is built in layers, each a module that owns one part and adds it to the one
below: live.py (the deployment as held: servers, counters, routes, fleet.json, events),
scaling.py (measuring, scaling, retiring replicas), candidates.py (judging, rolling back and
promoting a candidate), orders.py (orders from commands); Controller here is the loop that
starts, adopts, ticks, replaces what died and stops.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mllib.serving.control.agentservers import ReplicaFailed
from mllib.serving.control.fleet import Candidate, FleetSpec, read_state, server_spec_from
from mllib.serving.control.orders import OrderLoop
from mllib.serving.control.servers import ServerState
from mllib.serving.counters import Counters
from mllib.serving.routes import STABLE
from mllib.serving.spec import write_status

log = logging.getLogger("mllib.serving.controller")
TICK_S = 0.1


class StartFailed(Exception):
    """The deployment's stable server could not start."""


ROTATE_EVERY_S = 5.0  # how often the controller looks at server.log's size


class Controller(OrderLoop):
    """A deployment's loop: start (or take over) its servers, tick until stopped, stop them."""

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
            self.remote.adopt(
                state.get("remote") or [],
                state.get("remote_next_id", 1),
                state.get("remote_templates"),
            )
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
        self.reporter.tick(now)

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
