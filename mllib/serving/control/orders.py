"""Orders from commands (a canary, a promotion, a rollback: fleet.py's files in `orders/`),
carried out by the controller and answered, or refused with a hint.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mllib.serving.control.candidates import CandidateLoop
from mllib.serving.control.fleet import Candidate, answer_order, pending_orders, server_spec_from
from mllib.serving.routes import CANARY, SHADOW

log = logging.getLogger("mllib.serving.controller")


class OrderRefused(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class OrderLoop(CandidateLoop):
    """Orders from commands, carried out between ticks."""

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
                # What it changed in the routes is served before the command hears back: a
                # promotion's step takes its share from the caller's next request on.
                self._write_routes()
                self._write_state(force=True)
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
        count = self._share(self.candidate)
        placed = ""
        if self.remote is not None:  # its replicas go where stable's are: on the agents
            plan = order.get("env_plan") or self.spec.env_plan
            placed = "; " + "; ".join(self.remote.add_variant(variant, spec, plan, count))
            self.candidate_id = f"r{self.next_id}"  # its replicas on agents, as one
            self.next_id += 1
        else:
            self.candidate_id = self._start_server(variant, spec, public=False, processes=count).id
        sticky = f", sticky by {order['sticky_by']}" if order.get("sticky_by") else ""
        self._event(
            "rollout", "started",
            f"{order['mode']} of {spec.servable.label}: {order['weight']:g}%{sticky}{placed}",
            user=order["user"], model_version=spec.servable.version,
        )  # fmt: skip
        return {"variant": variant, "server": self.candidate_id}

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
