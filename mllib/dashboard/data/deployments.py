"""The deployments pane's data: per environment what is deployed and its live traffic with recent
history, the audit log, the deploy rules' state, and stop and rollback under the CLI's rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.serving.control.deploy import DeployContext

DEPLOY_SERIES = ("rps", "p50_ms", "p99_ms", "error_rate")
DEPLOY_HISTORY = 40  # samples behind each deployment sparkline


@dataclass
class Rules:
    """The deploy rules' state for this user: prod deploy tokens left, and cooldowns by model."""

    user: str
    budget: float
    budget_burst: float
    cooldowns: dict[str, str]  # model -> the refusal message while one runs


class Deployments:
    """Per environment: what is deployed, its live traffic with recent history, the audit log
    and the deploy rules' state (`mllib deploy status/history`)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.history: dict[str, dict[str, list[float | None]]] = {}

    def _ctx(self) -> DeployContext:
        from mllib.serving.control.deploy import DeployContext

        return DeployContext.create(self.ws)

    def status(self, window_s: float = 1.0) -> list[dict[str, Any]]:
        """`deploy status` rows; each live one also gets `series` (its recent samples)."""
        from mllib.serving.control.status import status

        rows = status(self._ctx(), window_s=window_s)
        for row in rows:
            series = self.history.setdefault(row["env"], {k: [] for k in DEPLOY_SERIES})
            stats = row.get("stats") or {}
            if row["state"] == "live":
                for key in DEPLOY_SERIES:
                    series[key] = [*series[key], stats.get(key)][-DEPLOY_HISTORY:]
            row["series"] = series
        return rows

    def recent(self, limit: int = 12) -> list[dict[str, Any]]:
        from mllib.serving.audit import history

        return history(self.ws.registry, limit=limit)

    def rules(self, models: list[str]) -> Rules:
        from mllib.serving.control import policy

        ctx = self._ctx()
        reg, rules = ctx.ws.registry, ctx.settings.deploy
        cooldowns = {}
        for model in models:
            refusal = policy.cooldown_check(reg, ctx.clock, ctx.user, model)
            if refusal is not None:
                cooldowns[model] = refusal.message
        return Rules(
            ctx.user, policy.budget(reg, ctx.clock, rules, ctx.user), rules.budget_burst, cooldowns
        )

    def stop(self, env: str) -> str:
        from mllib.serving.control.deploy import stop

        stopped = stop(self._ctx(), env)
        return "; ".join(f"Stopped {d.label} on {env}" for d in stopped)

    def rollback(self, env: str, reason: str | None = None) -> str:
        from mllib.serving.clock import human_duration
        from mllib.serving.control.deploy import rollback

        outcome = rollback(self._ctx(), env, reason=reason)
        message = f"Rolled {env} back to {outcome.deployment.label}"
        if outcome.cooldown_s:
            message += (
                f"; your next prod deploy of {outcome.deployment.model} waits "
                f"{human_duration(outcome.cooldown_s)}"
            )
        return message
