"""The deploy rules: what makes a careless deploy cost something, and careful ones quick.

1. Staging before prod: an artifact goes to prod only after it passed `mllib loadtest --env
   staging` within [deploy] staging_window_s (the load test ran against it live on staging).
2. Budget: prod deploys draw from a per-user token bucket of [deploy] budget_burst tokens, one
   coming back every budget_refill_s.
3. Cooldown: each rollback or failed prod deploy (a strike) starts a cooldown before that user's
   next prod deploy of that model: cooldown_base_s, doubled with every further strike (up to
   cooldown_max_s); a strike after quiet_period_s without one starts over at the base.
(Redeploying the artifact already live is refused as a no-op before any of these; rollbacks are
never refused, and `--force --reason` overrides all three, audited.)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from mllib.registry.db import Registry
from mllib.serving.clock import Clock, human_duration
from mllib.serving.control.settings import DeploySettings
from mllib.serving.spec import Servable


@dataclass(frozen=True)
class Refusal:
    rule: str  # staging, cooldown, budget
    message: str
    commands: list[str] = field(default_factory=list)


def staging_gate(
    reg: Registry, clock: Clock, settings: DeploySettings, servable: Servable, *, staging_live: bool
) -> Refusal | None:
    """Refuse unless `servable` passed a staging load test within the window."""
    since = clock.time() - settings.staging_window_s
    rows = reg.query(
        "SELECT passed, failed_checks, ts FROM loadtests WHERE env = 'staging' AND artifact = ?"
        " AND ts >= ? ORDER BY ts DESC",
        (servable.artifact, since),
    )
    if any(r["passed"] for r in rows):
        return None
    window = human_duration(settings.staging_window_s)
    ref = shlex.quote(servable.ref)
    commands = [] if staging_live else [f"mllib deploy {ref} --env staging"]
    commands += ["mllib loadtest --env staging", f"mllib deploy {ref} --env prod"]
    if rows:
        failed = "; ".join(json.loads(rows[0]["failed_checks"] or "[]")) or "it did not pass"
        message = (
            f"{servable.label} did not pass its last load test on staging ({failed}), "
            f"so it cannot go to prod."
        )
    else:
        message = (
            f"{servable.label} has not passed a load test on staging in the last {window}, "
            f"so it cannot go to prod."
        )
    return Refusal("staging", message, commands)


def budget(reg: Registry, clock: Clock, settings: DeploySettings, user: str) -> float:
    """The user's prod deploy tokens now (a new user has a full bucket)."""
    rows = reg.query("SELECT tokens, updated FROM deploy_budget WHERE user = ?", (user,))
    if not rows:
        return settings.budget_burst
    refill = (
        (clock.time() - rows[0]["updated"]) / settings.budget_refill_s
        if settings.budget_refill_s
        else float("inf")
    )
    return min(settings.budget_burst, rows[0]["tokens"] + max(0.0, refill))


def budget_check(
    reg: Registry, clock: Clock, settings: DeploySettings, user: str
) -> Refusal | None:
    tokens = budget(reg, clock, settings, user)
    if tokens >= 1.0:
        return None
    wait = (1.0 - tokens) * settings.budget_refill_s
    return Refusal(
        "budget",
        f"{user} has used the prod deploy budget ({settings.budget_burst:g} deploys, one more every "
        f"{human_duration(settings.budget_refill_s)}); the next prod deploy is possible in "
        f"{human_duration(wait)}.",
    )


def draw(reg: Registry, clock: Clock, settings: DeploySettings, user: str) -> float:
    """Take one token for a prod deploy; returns what is left."""
    with reg.transaction():
        left = budget(reg, clock, settings, user) - 1.0
        reg.conn.execute(
            "INSERT INTO deploy_budget (user, tokens, updated) VALUES (?, ?, ?)"
            " ON CONFLICT(user) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
            (user, left, clock.time()),
        )
    return left


def cooldown_check(reg: Registry, clock: Clock, user: str, model: str) -> Refusal | None:
    rows = reg.query(
        "SELECT level, until FROM deploy_strikes WHERE user = ? AND model = ?", (user, model)
    )
    if not rows or rows[0]["until"] <= clock.time():
        return None
    left = rows[0]["until"] - clock.time()
    level = rows[0]["level"]
    strikes = (
        "a rollback or failed deploy"
        if level == 1
        else f"{level} rollbacks or failed deploys in a row"
    )
    return Refusal(
        "cooldown",
        f"{user} is in a cooldown for prod deploys of {model} for another {human_duration(left)}, "
        f"after {strikes} (each one doubles the cooldown).",
    )


def strike(reg: Registry, clock: Clock, settings: DeploySettings, user: str, model: str) -> float:
    """Record a rollback or failed prod deploy; returns the cooldown (seconds) it starts."""
    now = clock.time()
    with reg.transaction():
        rows = reg.query(
            "SELECT level, last_strike FROM deploy_strikes WHERE user = ? AND model = ?",
            (user, model),
        )
        level = 1
        if rows and now - rows[0]["last_strike"] <= settings.quiet_period_s:
            level = rows[0]["level"] + 1
        seconds = min(settings.cooldown_base_s * 2 ** (level - 1), settings.cooldown_max_s)
        reg.conn.execute(
            "INSERT INTO deploy_strikes (user, model, level, last_strike, until) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(user, model) DO UPDATE SET level = excluded.level,"
            " last_strike = excluded.last_strike, until = excluded.until",
            (user, model, level, now, now + seconds),
        )
    return seconds
