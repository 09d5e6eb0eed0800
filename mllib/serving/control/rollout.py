"""Rollouts beside a live version: `mllib deploy MODEL:V --env prod --canary 10` (or `--ab 50
--sticky-by key|header:NAME`, or `--shadow`) and rolling a candidate back (promote.py steps
it to 100%). The deployment's controller carries them out (an order each, see fleet.py): it
starts the candidate's server beside stable, routes its share to it, judges it, steps a
promotion, takes it down; commands here check the rules, ask, and wait for the answer.

>>> Strategy.of(canary=10).mode, Strategy.of(ab=50, sticky_by="header:X-User").sticky_by
('canary', 'header:x-user')
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.errors import DeployFailedError, UsageError
from mllib.serving.control import policy, records
from mllib.serving.control.fleet import read_state, send_order
from mllib.serving.routes import parse_sticky
from mllib.serving.spec import Servable

CANDIDATE_MODES = ("canary", "ab", "shadow")


@dataclass(frozen=True)
class Strategy:
    """How a new version goes live: beside the current one for a share of requests."""

    mode: str  # canary, ab or shadow
    percent: float  # of requests (shadow: copied)
    sticky_by: str | None = None  # ab: key, or header:NAME
    agents: tuple[str, ...] = ()  # --agents: where the deployment it joins runs, said again

    @classmethod
    def of(
        cls,
        *,
        canary: float | None = None,
        ab: float | None = None,
        sticky_by: str | None = None,
        shadow: float | None = None,
    ) -> Strategy | None:
        """The strategy the options ask for (None: replace the live version); UsageError for
        options that contradict each other or are out of range."""
        given = [(name, value) for name, value in (("canary", canary), ("ab", ab), ("shadow", shadow)) if value is not None]  # fmt: skip
        if len(given) > 1:
            names = " and ".join(f"--{name}" for name, _ in given)
            raise UsageError(f"Give one of --canary, --ab and --shadow, not {names}")
        if sticky_by is not None and ab is None:
            raise UsageError(
                "--sticky-by goes with --ab (an A/B test keeps each caller on one side)"
            )
        if not given:
            return None
        mode, percent = given[0]
        if not 0 < percent < 100 and not (mode == "shadow" and percent == 100):
            raise UsageError(
                f"--{mode} must be a percentage above 0 and below 100, not {percent:g}",
                hint="For example --canary 10: one request in ten goes to the new version.",
            )
        try:
            sticky = parse_sticky(sticky_by or ("key" if mode == "ab" else None))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return cls(mode, float(percent), sticky)


def start_candidate(
    ctx: Any,
    servable: Servable,
    env: Any,
    current: records.Deployment | None,
    strategy: Strategy,
    *,
    say: Any,
) -> dict[str, Any]:
    """Ask the controller of `current` to run `servable` beside it; wait until the candidate
    takes requests (or why it could not). Returns what the controller reported."""
    from mllib.serving.control.environment import serving_plan, serving_python
    from mllib.serving.control.servable import materialize
    from mllib.serving.control.specs import replica_spec

    if current is None:
        raise UsageError(
            f"--{strategy.mode} needs a version live on {env.name} to run beside",
            hint=f"Deploy one first: mllib deploy {servable.ref} --env {env.name}",
        )
    folder = Path(current.dir or "")
    if not (folder / "fleet-spec.json").exists():
        raise UsageError(
            f"{current.label} on {env.name} was deployed by an older mllib, without replicas",
            hint=f"Deploy it again first: mllib deploy {current.model}:{current.version} "
            f"--env {env.name} --force --reason 'upgrade'",
        )
    placed = _placement(folder, current, strategy)
    say(f"Preparing {servable.label} (run {servable.run_id})")
    bundle = materialize(ctx.ws, servable)
    extra = {"env_plan": serving_plan(ctx.ws, bundle).to_json()} if placed else {}
    with serving_python(ctx.ws, servable, bundle, say=say) as python_env:  # held till it is up
        spec = replica_spec(ctx, servable, env, bundle, current.marker, python_env)
        alive = controller_alive(current)
        where = f" on agents {', '.join(placed)}" if placed else ""
        say(f"Starting its server{where} beside {current.label} ({_describe(strategy)})")
        started = send_order(
            folder,
            "candidate",
            timeout_s=30.0,
            alive=alive,
            spec=dataclasses.asdict(spec),
            mode=strategy.mode,
            weight=strategy.percent,
            sticky_by=strategy.sticky_by,
            user=ctx.user,
            **extra,
        )
        timeout_s = ctx.settings.deploy.ready_timeout_s
        error = _wait_candidate(folder, started["server"], timeout_s, alive)
    if error:
        if env.name == "prod":
            policy.strike(ctx.ws.registry, ctx.clock, ctx.settings.deploy, ctx.user, servable.model)
        raise DeployFailedError(
            f"{servable.label} did not start on {env.name}: {error}; {current.label} still "
            f"serves every request",
            hint=f"Its log: mllib deploy logs --env {env.name}",
        )
    return read_state(folder).get("candidate") or {}


def _placement(folder: Path, current: records.Deployment, strategy: Strategy) -> list[str]:
    """The agents the candidate's replicas run on: those of the deployment it joins (none: this
    machine); UsageError when --agents names others."""
    from mllib.serving.control.fleet import SPEC_FILE, FleetSpec

    placed = sorted(a["name"] for a in FleetSpec.read(folder / SPEC_FILE).agents)
    if strategy.agents and sorted(strategy.agents) != placed:
        where = f"on agents {', '.join(placed)}" if placed else "on this machine"
        raise UsageError(
            f"--agents {','.join(strategy.agents)}: a {strategy.mode} runs where "
            f"{current.label} runs, {where}",
            hint="Leave --agents out (or name those agents), or deploy it in place of "
            f"{current.label} with --agents.",
        )
    return placed


def _wait_candidate(folder: Path, server: str, timeout_s: float, alive: Any) -> str | None:
    """None once the gateway routes the candidate's share to it (the routes naming a live
    replica of it are published: the next request takes them); else why it will not be. A
    replica merely ready is not enough: under load its routes reached the gateway later, and
    a caller's first requests all went to stable. Only this candidate's own abort counts: the
    state file may still show an earlier rollout of the same version taken down (it is
    written a moment after the order is answered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(folder)
        candidate = state.get("candidate") or {}
        routed = state.get("routed") or {}
        if state.get("candidate_id") == server and routed.get(candidate.get("variant")):
            return None
        abort = state.get("last_abort") or {}
        if abort.get("server") == server:
            return abort.get("why") or "it was taken down"
        if not alive():
            return "the deployment's controller exited"
        time.sleep(0.05)
    return f"not ready after {timeout_s:g}s ([deploy] ready_timeout_s)"


def _describe(strategy: Strategy) -> str:
    if strategy.mode == "shadow":
        return f"a copy of {strategy.percent:g}% of requests, answers compared and discarded"
    if strategy.mode == "ab":
        return f"{strategy.percent:g}% of callers, sticky by {strategy.sticky_by}"
    return f"{strategy.percent:g}% of requests"


def controller_alive(dep: records.Deployment) -> Any:
    from mllib.runtime.processes import is_alive

    return lambda: is_alive(dep.pid, dep.pid_ctime)


def live_candidate(ctx: Any, env: str) -> tuple[records.Deployment, dict[str, Any]] | None:
    """The live deployment of `env` and the candidate it runs, if it runs one."""
    current = records.live(ctx.ws.registry, env)
    if current is None or not current.dir:
        return None
    candidate = read_state(Path(current.dir)).get("candidate")
    return (current, candidate) if candidate else None


def abort(ctx: Any, env: str, *, reason: str | None) -> dict[str, Any] | None:
    """Take the candidate of `env` down at once (None when it runs none); on prod a strike.
    Called under the environment's lock."""
    found = live_candidate(ctx, env)
    if found is None:
        return None
    current, candidate = found
    answer = send_order(
        Path(current.dir or ""),
        "abort",
        timeout_s=30.0,
        alive=controller_alive(current),
        reason=reason,
        user=ctx.user,
    )
    servable = candidate["spec"]["servable"]
    if env == "prod":
        answer["cooldown_s"] = policy.strike(
            ctx.ws.registry, ctx.clock, ctx.settings.deploy, ctx.user, servable["model"]
        )
    return {**answer, "stable": current.label}
