"""Deployments: `mllib deploy`, `rollback`, `stop`, with the deploy rules applied and every
attempt, refusal and override written to the audit log.

A deploy starts the new server beside the one it replaces, on the same port (SO_REUSEPORT), waits
until every worker has loaded the model, then stops the old one: the URL never changes and never
refuses a connection. A server that fails to start is stopped and recorded as failed; the old one
keeps serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.errors import DeployFailedError, MllibError, NotFoundError, PolicyError, UsageError
from mllib.registry.runs import get_run, now
from mllib.serving import audit
from mllib.serving.clock import human_duration
from mllib.serving.control import policy, process, records, stopping
from mllib.serving.control.context import DeployContext, Progress
from mllib.serving.control.environment import ServingEnvError, serving_plan, serving_python
from mllib.serving.control.fleet import SPEC_FILE as FLEET_SPEC_FILE
from mllib.serving.control.fleet import start_controller, takes_over
from mllib.serving.control.paths import LOG_FILE, deployment_dir, serving_dir
from mllib.serving.control.ports import port_for
from mllib.serving.control.records import Deployment
from mllib.serving.control.rollout import Strategy, start_candidate
from mllib.serving.control.rollout import abort as abort_candidate
from mllib.serving.control.servable import from_run, materialize, resolve
from mllib.serving.control.settings import EnvSettings, check_replicas
from mllib.serving.control.specs import fleet_spec, placement
from mllib.serving.control.stopping import deploying, halt, reconcile_lock, records_of
from mllib.serving.spec import PythonEnv, Servable, read_status
from mllib.workspace import Workspace

__all__ = [
    "DeployContext",
    "DeployFailedError",
    "Outcome",
    "deploy",
    "reconcile",
    "rollback",
    "stop",
]


@dataclass(frozen=True)
class Outcome:
    deployment: Deployment
    noop: bool = False
    forced: list[str] | None = None  # the rules a --force overrode
    replaced: Deployment | None = None
    cooldown_s: float | None = None  # the cooldown a rollback started
    candidate: dict | None = None  # a rollout started beside `deployment` (fleet.json's)
    rolled_back: str | None = None  # a rollout taken down (its label)


def deploy(
    ctx: DeployContext,
    ref: str,
    env: str,
    *,
    best: str | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Progress | None = None,
    strategy: Strategy | None = None,
    replicas: tuple[int | None, int | None] = (None, None),
    agents: list[str] | None = None,
) -> Outcome:
    """Deploy `ref` (MODEL, MODEL:VERSION, MODEL@ALIAS or a run id; MODEL with `best`: its
    version with the best evaluation of that metric) to `env` under the deploy rules: in
    place of what is live, or beside it for a share of requests (`strategy`: a canary, an
    A/B test, a shadow). `replicas`: (min, max) over the settings'; `agents`: one replica on
    each of these agents to begin with (over [serve] placement); with a strategy, where the
    deployment it joins runs (its candidate's replicas run there too)."""
    env_settings = ctx.settings.env(env)
    if force and not (reason and reason.strip()):
        raise UsageError(
            "--force needs --reason TEXT: overrides are audited with their reason",
            hint=f"For example: mllib deploy {ref} --env {env} --force --reason 'hotfix for ...'",
        )
    low, high = replicas
    if (low is not None and low < 1) or (high is not None and high < 0):
        raise UsageError("--min-replicas must be at least 1 (and --max-replicas not negative)")
    if strategy is not None and replicas != (None, None):
        raise UsageError(
            "--min-replicas/--max-replicas set a new deployment's replicas; a rollout runs "
            "with those of the deployment it joins"
        )
    if strategy is not None and agents:  # said again: checked against where it joins
        strategy = dataclasses.replace(strategy, agents=tuple(agents))
    placed = placement(ctx, agents) if strategy is None else []
    check_replicas(
        env_settings.min_replicas if low is None else low,
        env_settings.max_replicas if high is None else high,
        "--min-replicas/--max-replicas",
    )
    # A LitServe API's new code is recorded as a version on its way to staging, never by a
    # prod deploy the staging gate refuses.
    try:
        servable = resolve(ctx.ws, ref, best=best, notify=progress, record=env != "prod" or force)
    except PolicyError as exc:  # a LitServe API's code that never went to staging
        ctx.audit(
            action="deploy",
            result="refused",
            env=env,
            reason=exc.message,
            detail={"rules": ["staging"], "ref": ref},
        )
        raise
    with env_lock(ctx.ws, env):
        return _deploy(
            ctx,
            servable,
            env_settings,
            force=force,
            reason=reason,
            progress=progress,
            strategy=strategy,
            replicas=replicas,
            agents=placed,
        )


def _deploy(
    ctx: DeployContext,
    servable: Servable,
    env_settings: EnvSettings,
    *,
    force: bool,
    reason: str | None,
    progress: Progress | None,
    strategy: Strategy | None,
    replicas: tuple[int | None, int | None],
    agents: list[dict[str, Any]],
) -> Outcome:
    env = env_settings.name
    reconcile(ctx.ws)
    current = records.live(ctx.ws.registry, env)
    common = dict(env=env, model=servable.model, version=servable.version)
    if current and current.artifact == servable.artifact and not force:
        ctx.audit(
            action="deploy",
            result="noop",
            deployment_id=current.id,
            reason="already live",
            **common,
        )
        return Outcome(current, noop=True)
    forced = None
    if env == "prod":
        refusals = _prod_refusals(ctx, servable)
        if refusals and not force:
            message = " ".join(r.message for r in refusals)
            ctx.audit(
                action="deploy",
                result="refused",
                reason=message,
                detail={"rules": [r.rule for r in refusals]},
                **common,
            )
            raise PolicyError(f"Refused: {message}", hint=_refusal_hint(refusals, servable, env))
        if force:
            _check_admin(ctx)
            forced = [r.rule for r in refusals]
        else:
            policy.draw(ctx.ws.registry, ctx.clock, ctx.settings.deploy, ctx.user)
    if strategy is not None:
        say = progress or (lambda message: None)
        try:
            candidate = start_candidate(ctx, servable, env_settings, current, strategy, say=say)
        except MllibError as exc:
            ctx.audit(action="deploy", result="failed", reason=exc.message, **common)
            raise
        detail = {"mode": strategy.mode, "percent": strategy.percent}
        if strategy.sticky_by:
            detail["sticky_by"] = strategy.sticky_by
        if forced:
            detail["overrode"] = forced  # type: ignore[assignment]
        ctx.audit(
            action="deploy",
            result="forced" if forced is not None else "ok",
            reason=reason,
            detail=detail,
            deployment_id=current.id if current else None,
            **common,
        )
        return Outcome(current, forced=forced, candidate=candidate)  # type: ignore[arg-type]
    return _roll_out(
        ctx,
        servable,
        env_settings,
        current,
        action="deploy",
        forced=forced,
        reason=reason,
        progress=progress,
        replicas=replicas,
        agents=agents,
    )


@contextmanager
def env_lock(ws: Workspace, env: str) -> Iterator[None]:
    """One deploy, rollback or stop of an environment at a time (across processes)."""
    from mllib.locks import holder, try_lock

    path = serving_dir(ws) / "locks" / f"{env}.lock"
    with try_lock(path) as held:
        if not held:
            pid = holder(path)
            raise MllibError(
                f"Another deploy, rollback or stop of {env} is in progress"
                f" ({f'pid {pid}' if pid else 'another process'})",
                hint="Wait for it to finish, then try again.",
            )
        yield


def rollback(
    ctx: DeployContext, env: str, *, reason: str | None = None, progress: Progress | None = None
) -> Outcome:
    """Put back the artifact that was live on `env` before the current one. Never refused, but on
    prod it is a strike: the user's cooldown for this model doubles."""
    env_settings = ctx.settings.env(env)
    with env_lock(ctx.ws, env):
        return _rollback(ctx, env_settings, reason=reason, progress=progress)


def _rollback(
    ctx: DeployContext, env_settings: EnvSettings, *, reason: str | None, progress: Progress | None
) -> Outcome:
    env = env_settings.name
    reconcile(ctx.ws)
    current = records.live(ctx.ws.registry, env)
    if current is None:
        raise NotFoundError(f"Nothing is live on {env}, so there is nothing to roll back")
    taken_down = abort_candidate(ctx, env, reason=reason)
    if taken_down is not None:  # a rollout beside stable: stable takes every request again
        ctx.audit(
            action="rollback",
            result="ok",
            env=env,
            model=current.model,
            version=current.version,
            deployment_id=current.id,
            reason=reason,
            detail={"rolled_back": taken_down["rolled_back"]},
        )
        return Outcome(
            current, cooldown_s=taken_down.get("cooldown_s"), rolled_back=taken_down["rolled_back"]
        )
    previous = records.previous_artifact(ctx.ws.registry, env, current)
    if previous is None:
        raise NotFoundError(
            f"No earlier version was live on {env} before {current.label}; nothing to roll back to",
            hint=f"Stop it instead: mllib deploy stop --env {env}",
        )
    servable = from_run(ctx.ws, get_run(ctx.ws.registry, previous.run_id))
    cooldown = None
    try:
        outcome = _roll_out(
            ctx,
            servable,
            env_settings,
            current,
            action="rollback",
            forced=None,
            reason=reason,
            progress=progress,
        )
    finally:
        if env == "prod":
            cooldown = policy.strike(
                ctx.ws.registry, ctx.clock, ctx.settings.deploy, ctx.user, current.model
            )
    return Outcome(outcome.deployment, replaced=outcome.replaced, cooldown_s=cooldown)


def stop(ctx: DeployContext, env: str, *, progress: Progress | None = None) -> list[Deployment]:
    """Stop every server of `env`; returns the deployments stopped."""
    ctx.settings.env(env)
    with env_lock(ctx.ws, env):
        reconcile(ctx.ws)
        running = records.running(ctx.ws.registry, env)
        if not running:
            raise NotFoundError(f"Nothing is running on {env}", hint="See `mllib deploy status`.")
        _stop_all(ctx, env, running, progress)
    return [records.get(ctx.ws.registry, d.id) for d in running]


def _stop_all(
    ctx: DeployContext, env: str, running: list[Deployment], progress: Progress | None
) -> None:
    for dep in running:
        if progress:
            progress(f"Stopping {dep.label} on {env} (pid {dep.pid})")
        _stop_server(ctx, dep, state="stopped")
        ctx.audit(
            action="stop",
            result="ok",
            env=env,
            model=dep.model,
            version=dep.version,
            deployment_id=dep.id,
        )


def reconcile(ws: Workspace) -> None:
    """Deployments whose controller is gone: a live one whose front still serves gets a new
    controller (it takes over the running replicas); any other is marked crashed, and whatever
    is left of it is stopped. A deployment still starting whose `mllib deploy` is gone (killed
    before it was live) is stopped and marked failed: what was live stays live."""
    from mllib.runtime.processes import create_time, is_alive

    stopping.finish(ws)
    for dep in records.running(ws.registry):
        if dep.state == "starting" and dep.pid and is_alive(dep.pid, dep.pid_ctime):
            if not deploying(ws, dep.env):
                _abandoned(ws, dep)
            continue
        if not dep.pid or is_alive(dep.pid, dep.pid_ctime):
            continue
        with reconcile_lock(ws):
            dep = records.get(ws.registry, dep.id)
            if dep.state not in records.RUNNING or is_alive(dep.pid, dep.pid_ctime):
                continue
            if stopping.begun(dep):  # a stop under way: never started again
                continue
            if dep.state == "live" and dep.dir and takes_over(Path(dep.dir)):
                pid = start_controller(ws, Path(dep.dir), marker=dep.marker)
                records.update(ws.registry, dep.id, pid=pid, pid_ctime=create_time(pid))
                continue
            status = read_status(Path(dep.dir)) if dep.dir else {}
            error = status.get("error") or "the server process exited"
            process.kill_all(process.find(dep.pid, dep.marker, records=records_of(dep)))
            records.update(ws.registry, dep.id, state="crashed", error=error, stopped_at=now())


def _abandoned(ws: Workspace, dep: Deployment) -> None:
    """A deployment left starting by a `mllib deploy` that ended (kill -9, a lost terminal):
    stopped, failed, and said so in the history."""
    from mllib.serving.clock import SystemClock
    from mllib.serving.control.settings import Settings

    with reconcile_lock(ws):
        dep = records.get(ws.registry, dep.id)
        if dep.state != "starting" or deploying(ws, dep.env):
            return
        grace = Settings.from_config(ws.project.config).deploy.stop_grace_s
        process.stop(dep.pid, marker=dep.marker, grace_s=grace, records=records_of(dep))
        why = "interrupted: the mllib deploy that started it ended before it was live"
        records.update(ws.registry, dep.id, state="failed", error=why, stopped_at=now())
        audit.record(
            ws.registry, SystemClock(), user=dep.user, action=dep.action or "deploy",
            result="failed", env=dep.env, model=dep.model, version=dep.version,
            deployment_id=dep.id, reason=f"reconciled: {why}",
        )  # fmt: skip


def _prod_refusals(ctx: DeployContext, servable: Servable) -> list[policy.Refusal]:
    reg, clock, rules = ctx.ws.registry, ctx.clock, ctx.settings.deploy
    staging = records.live(reg, "staging")
    checks = [
        policy.staging_gate(
            reg,
            clock,
            rules,
            servable,
            staging_live=bool(staging and staging.artifact == servable.artifact),
        ),
        policy.cooldown_check(reg, clock, ctx.user, servable.model),
        policy.budget_check(reg, clock, rules, ctx.user),
    ]
    return [c for c in checks if c is not None]


def _refusal_hint(refusals: list[policy.Refusal], servable: Servable, env: str) -> str:
    lines = []
    commands = [c for r in refusals for c in r.commands]
    if commands:
        lines.append("Run, in order:")
        lines += [f"  {c}" for c in commands]
    if any(r.rule != "staging" for r in refusals):
        lines.append("Wait for it, or (admins) override, audited:")
    else:
        lines.append("An admin can override, audited:")
    lines.append(f"  mllib deploy {servable.ref} --env {env} --force --reason 'why'")
    return "\n".join(lines)


def _check_admin(ctx: DeployContext) -> None:
    admins = ctx.settings.deploy.admins
    if admins and ctx.user not in admins:
        ctx.audit(action="deploy", result="refused", reason="--force by a non-admin")
        raise PolicyError(
            f"Refused: only {', '.join(admins)} may override the deploy rules with --force",
            hint="[deploy] admins in mllib.toml lists them.",
        )


def _roll_out(
    ctx: DeployContext,
    servable: Servable,
    env: EnvSettings,
    current: Deployment | None,
    *,
    action: str,
    forced: list[str] | None,
    reason: str | None,
    progress: Progress | None,
    replicas: tuple[int | None, int | None] = (None, None),
    agents: list[dict[str, Any]] | None = None,
) -> Outcome:
    """Start a new deployment of `servable` (its controller, front and replicas) beside
    `current`, on the same port, with the Python it needs (mllib's, or a venv of its own
    dependencies); once it answers, stop `current`. `agents`: where its replicas run (None:
    as [serve] placement says)."""
    say = progress or (lambda message: None)
    say(f"Preparing {servable.label} (run {servable.run_id})")
    bundle = materialize(ctx.ws, servable)
    if agents is None:
        agents = placement(ctx, None)
    try:
        with serving_python(ctx.ws, servable, bundle, say=say) as python_env:
            return _start_deployment(
                ctx, servable, env, current, bundle, python_env,
                action=action, forced=forced, reason=reason, say=say, replicas=replicas,
                agents=agents,
            )  # fmt: skip
    except ServingEnvError as exc:  # what is live stays live
        common = dict(env=env.name, model=servable.model, version=servable.version)
        ctx.audit(action=action, result="failed", reason=exc.message, **common)
        raise


def _start_deployment(
    ctx: DeployContext,
    servable: Servable,
    env: EnvSettings,
    current: Deployment | None,
    bundle: Path,
    python_env: PythonEnv,
    *,
    action: str,
    forced: list[str] | None,
    reason: str | None,
    say: Callable[[str], None],
    replicas: tuple[int | None, int | None],
    agents: list[dict[str, Any]],
) -> Outcome:
    ws, reg = ctx.ws, ctx.ws.registry
    port = port_for(ws, env, current)
    deployment_id = records.new_deployment_id()
    folder = deployment_dir(ws, deployment_id)
    folder.mkdir(parents=True, exist_ok=True)
    fleet = fleet_spec(
        ctx,
        servable,
        env,
        bundle,
        port=port,
        folder=folder,
        deployment_id=deployment_id,
        replicas=replicas,
        python_env=python_env,
        agents=agents,
        env_plan=serving_plan(ws, bundle).to_json() if agents else None,
    )
    fleet.write(folder / FLEET_SPEC_FILE)
    dep = Deployment.starting(
        dataclasses.replace(
            fleet.stable,
            host=env.host,
            port=port,
            state_dir=str(folder),
            deployment=deployment_id,
        ),
        action=action,
        user=ctx.user,
        log_path=str(folder / LOG_FILE),
        forced=forced is not None,
        reason=reason,
        previous=current,
    )
    dep.min_replicas, dep.max_replicas = fleet.scaling.min_replicas, fleet.scaling.ceiling
    records.insert(reg, dep)
    common = dict(
        env=env.name, model=servable.model, version=servable.version, deployment_id=dep.id
    )
    if agents:
        names = ", ".join(a["name"] for a in agents)
        say(
            f"Starting a replica on each of {names} (the first builds its venv there), behind port {port}"
        )
    else:
        say(
            f"Starting {fleet.scaling.min_replicas} replica(s) of {env.workers} {env.inference} "
            f"process(es) behind port {port} (up to {fleet.scaling.ceiling} replicas)"
        )
    pid = start_controller(ws, folder, marker=dep.id)
    from mllib.runtime.processes import create_time

    records.update(reg, dep.id, pid=pid, pid_ctime=create_time(pid))
    try:
        error = _wait_ready(folder, pid, ctx.settings.deploy.ready_timeout_s)
    except KeyboardInterrupt:  # the deploy was interrupted: leave nothing half-started behind
        process.stop(
            pid, marker=dep.id, grace_s=ctx.settings.deploy.stop_grace_s, records=records_of(dep)
        )
        records.update(reg, dep.id, state="failed", error="interrupted", stopped_at=now())
        ctx.audit(action=action, result="failed", reason="interrupted", **common)
        raise
    if error:
        process.stop(
            pid, marker=dep.id, grace_s=ctx.settings.deploy.stop_grace_s, records=records_of(dep)
        )
        records.update(reg, dep.id, state="failed", error=error, stopped_at=now())
        ctx.audit(action=action, result="failed", reason=error, **common)
        if env.name == "prod" and action == "deploy":
            policy.strike(reg, ctx.clock, ctx.settings.deploy, ctx.user, servable.model)
        still = f"; {current.label} still serves {env.name}" if current else ""
        raise DeployFailedError(
            f"{servable.label} did not start on {env.name}: {error}{still}",
            hint=f"Its log: mllib deploy logs --env {env.name} (or {folder / LOG_FILE})",
        )
    records.update(reg, dep.id, state="live", live_at=now())
    say(f"{servable.label} is live at {dep.url}")
    if current:
        say(f"Stopping {current.label} (replaced)")
        _stop_server(ctx, current, state="stopped", replaced_by=dep.id)
    result = "forced" if forced is not None else "ok"
    detail = {"overrode": forced} if forced else None
    ctx.audit(action=action, result=result, reason=reason, detail=detail, **common)
    return Outcome(records.get(reg, dep.id), forced=forced, replaced=current)


def _wait_ready(folder: Path, pid: int, timeout_s: float) -> str | None:
    """None once the controller (under supervisor `pid`, in this new folder) says every server
    is ready; else why it will not be."""
    import time

    from mllib.runtime.processes import is_alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_status(folder)
        if status.get("state") == "ready" and is_alive(status.get("pid")):
            return None
        if status.get("state") == "failed":
            return status.get("error") or "the model could not be loaded"
        if not is_alive(pid):
            status = read_status(folder)
            return status.get("error") or f"the server exited at start-up ({_log_tail(folder)})"
        time.sleep(0.05)
    return f"not ready after {human_duration(timeout_s)} ([deploy] ready_timeout_s)"


def _log_tail(folder: Path, lines: int = 3) -> str:
    from mllib.serving.logs import pretty

    path = folder / LOG_FILE
    if not path.exists():
        return "no log"
    tail = path.read_bytes().splitlines()[-lines:]
    return " | ".join(pretty(line) for line in tail)


def _stop_server(
    ctx: DeployContext, dep: Deployment, *, state: str, replaced_by: str | None = None
) -> None:
    halt(ctx.ws, dep, ctx.settings.deploy.stop_grace_s, state=state, replaced_by=replaced_by)
