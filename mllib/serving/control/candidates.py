"""The controller's side of a rollout (rollout.py is the commands'): a candidate judged against
stable and rolled back when worse, a promotion stepped to 100%, then handed over to a stable
server of the candidate.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from mllib.serving.control.fleet import Candidate
from mllib.serving.control.judge import figures as judged
from mllib.serving.control.judge import judge
from mllib.serving.control.scaling import ScalingLoop
from mllib.serving.control.servers import ServerState
from mllib.serving.control.warmup import Warmup
from mllib.serving.routes import CANARY, SHADOW, STABLE, Replica

log = logging.getLogger("mllib.serving.controller")


class CandidateLoop(ScalingLoop):
    """A candidate's life beside stable: judged, rolled back, or promoted and handed over."""

    def _judge(self, figures: dict[str, dict[str, Any]]) -> None:
        """Judge a canary over the latest window, once it is warm (warmup.py: its first
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
            self.warmup = None
            return
        now = time.monotonic()
        reading = self.history[-1][1]
        if self.warmup is None:
            self.warmup = Warmup()
        since = self.warmup.update(
            now, {i: reading[i] for i in figures[CANARY]["ids"] if i in reading}
        )
        if since is None:
            return  # still warming up: never judged
        window = self.spec.rollout.window_s
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
        if self.remote is not None:  # its replicas on agents, if it has them, drain
            for replica in self.remote.drop_variant(candidate.variant):
                self.leaving.setdefault(replica.id, now)
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
            if self.remote is not None:
                self.remote.rename_variant(SHADOW, CANARY)
        candidate.weight = weight
        candidate.next_step_at = now + candidate.interval_s
        counters = self.counters.get(self.candidate_id or "")
        if counters is not None and candidate.spec.inline:  # its replicas grow with its share
            counters.desired = max(counters.desired, self._share(candidate))
        elif self.remote is not None:  # on agents: more replicas of it placed there
            for _ in range(self._share(candidate) - self.remote.count(candidate.variant)):
                self.remote.grow(candidate.variant)
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
        if self.remote is not None:  # its replicas on agents are stable's now; stable's drain
            for replica in self.remote.promote_variant(candidate.variant):
                self.leaving.setdefault(replica.id, now)
        self.stable_id, self.successor = server.id, None
        self.stable, self.candidate, self.candidate_id = candidate.spec, None, None
        self.scalers = {}
        self.history = []
        self._write_routes()
        self.row = self._record_promotion(candidate)
        self.reporter.due()  # the team server's NAME@ENV follows it (reporting.py)
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
