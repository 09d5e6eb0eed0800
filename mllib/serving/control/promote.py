"""`mllib deploy promote`: move an environment's candidate (canary, A/B test, shadow) to 100%
of requests in steps, under the environment's lock; its controller steps it, and holds a step
back while the candidate looks worse than stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.errors import MllibError, NotFoundError, UsageError
from mllib.serving.control.deploy import env_lock, reconcile
from mllib.serving.control.fleet import send_order
from mllib.serving.control.judge import parse_steps
from mllib.serving.control.rollout import controller_alive, live_candidate


def promote(
    ctx: Any, env: str, *, steps: str | None = None, interval_s: float | None = None
) -> dict[str, Any]:
    """Move the candidate of `env` to 100% of requests, in steps (`10,50,100`) spaced
    `interval_s` apart; refused while the canary is failing."""
    rules = ctx.settings.rollout
    try:
        planned = parse_steps(steps or rules.promote_steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    interval = rules.promote_interval_s if interval_s is None else interval_s
    if interval < 0:
        raise UsageError("--interval must not be negative")
    ctx.settings.env(env)
    with env_lock(ctx.ws, env):
        reconcile(ctx.ws)
        found = live_candidate(ctx, env)
        if found is None:
            raise NotFoundError(
                f"Nothing is being rolled out on {env} to promote",
                hint=f"Start a canary: mllib deploy MODEL:VERSION --env {env} --canary 10",
            )
        current, candidate = found
        servable = candidate["spec"]["servable"]
        try:
            answer = send_order(
                Path(current.dir or ""),
                "promote",
                timeout_s=30.0,
                alive=controller_alive(current),
                steps=planned,
                interval_s=interval,
            )
        except MllibError as exc:
            ctx.audit(
                action="promote", result="refused", env=env, model=servable["model"],
                version=servable["version"], reason=exc.message,
            )  # fmt: skip
            raise
        ctx.audit(
            action="promote", result="ok", env=env, model=servable["model"],
            version=servable["version"], deployment_id=current.id,
            detail={"steps": planned, "interval_s": interval},
        )  # fmt: skip
    return {**answer, "model": servable["model"], "version": servable["version"]}
