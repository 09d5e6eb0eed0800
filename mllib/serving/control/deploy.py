"""Deployments: `mllib deploy`, `rollback`, `stop`, with the deploy rules applied and every
attempt, refusal and override written to the audit log.

A deploy starts the new server beside the one it replaces, on the same port (SO_REUSEPORT), waits
until every worker has loaded the model, then stops the old one: the URL never changes and never
refuses a connection. A server that fails to start is stopped and recorded as failed; the old one
keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mllib.errors import MllibError, NotFoundError, PolicyError, UsageError
from mllib.registry.runs import get_run, now
from mllib.serving import audit
from mllib.serving.clock import Clock, SystemClock, human_duration
from mllib.serving.control import policy, process, records
from mllib.serving.control.paths import LOG_FILE, deployment_dir, serving_dir
from mllib.serving.control.ports import port_for
from mllib.serving.control.records import Deployment
from mllib.serving.control.servable import from_run, materialize, resolve, server_spec
from mllib.serving.control.settings import EnvSettings, Settings
from mllib.serving.spec import SPEC_FILE, KeyCheck, Servable, ServerSpec, read_status
from mllib.workspace import Workspace

Progress = Callable[[str], None]


@dataclass
class DeployContext:
    """Who deploys what where, under which rules and clock (one object, passed everywhere)."""

    ws: Workspace
    settings: Settings
    clock: Clock
    user: str

    @classmethod
    def create(
        cls, ws: Workspace | None = None, *, clock: Clock | None = None, user: str | None = None
    ) -> DeployContext:
        from mllib.identity import current_user

        ws = ws or Workspace.find()
        return cls(
            ws,
            Settings.from_config(ws.project.config),
            clock or SystemClock(),
            user or current_user(),
        )

    def audit(self, **fields) -> None:
        audit.record(self.ws.registry, self.clock, user=self.user, **fields)


@dataclass(frozen=True)
class Outcome:
    deployment: Deployment
    noop: bool = False
    forced: list[str] | None = None  # the rules a --force overrode
    replaced: Deployment | None = None
    cooldown_s: float | None = None  # the cooldown a rollback started


class DeployFailedError(MllibError):
    """The new server did not become ready; the previous deployment (if any) still serves."""

    exit_code = 3


def deploy(
    ctx: DeployContext,
    ref: str,
    env: str,
    *,
    best: str | None = None,
    force: bool = False,
    reason: str | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Deploy `ref` (MODEL, MODEL:VERSION, MODEL@ALIAS or a run id; MODEL with `best`: its
    version with the best evaluation of that metric) to `env` under the deploy rules."""
    env_settings = ctx.settings.deploy.env(env)
    if force and not (reason and reason.strip()):
        raise UsageError(
            "--force needs --reason TEXT: overrides are audited with their reason",
            hint=f"For example: mllib deploy {ref} --env {env} --force --reason 'hotfix for ...'",
        )
    servable = resolve(ctx.ws, ref, best=best, notify=progress)
    with env_lock(ctx.ws, env):
        return _deploy(ctx, servable, env_settings, force=force, reason=reason, progress=progress)


def _deploy(
    ctx: DeployContext,
    servable: Servable,
    env_settings: EnvSettings,
    *,
    force: bool,
    reason: str | None,
    progress: Progress | None,
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
    return _roll_out(
        ctx,
        servable,
        env_settings,
        current,
        action="deploy",
        forced=forced,
        reason=reason,
        progress=progress,
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
    env_settings = ctx.settings.deploy.env(env)
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
    ctx.settings.deploy.env(env)
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
    """Mark deployments whose server process is gone as crashed."""
    from mllib.runtime.processes import is_alive

    for dep in records.running(ws.registry):
        if dep.pid and not is_alive(dep.pid, dep.pid_ctime):
            status = read_status(Path(dep.dir)) if dep.dir else {}
            error = status.get("error") or "the server process exited"
            records.update(ws.registry, dep.id, state="crashed", error=error, stopped_at=now())


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
) -> Outcome:
    say = progress or (lambda message: None)
    ws, reg = ctx.ws, ctx.ws.registry
    say(f"Preparing {servable.label} (run {servable.run_id})")
    bundle = materialize(ws, servable)
    port = port_for(ws, env, current)
    deployment_id = records.new_deployment_id()
    folder = deployment_dir(ws, deployment_id)
    folder.mkdir(parents=True, exist_ok=True)
    spec = _server_spec(
        ctx,
        servable,
        env,
        bundle,
        port=port,
        folder=folder,
        deployment_id=deployment_id,
        takes_over=current is not None,  # then it listens only once it can answer
    )
    spec.write(folder / SPEC_FILE)
    dep = Deployment.starting(
        spec,
        action=action,
        user=ctx.user,
        log_path=str(folder / LOG_FILE),
        forced=forced is not None,
        reason=reason,
        previous=current,
    )
    records.insert(reg, dep)
    common = dict(
        env=env.name, model=servable.model, version=servable.version, deployment_id=dep.id
    )
    say(f"Starting {env.workers} {env.inference} worker(s) on port {port}")
    from mllib.runtime.processes import create_time

    pid = process.start(
        folder / SPEC_FILE,
        folder / LOG_FILE,
        cwd=ws.project.root,
        env=ws.project.env_under_shell("local"),
        marker=dep.id,
    )
    records.update(reg, dep.id, pid=pid, pid_ctime=create_time(pid))
    try:
        error = _wait_ready(folder, pid, ctx.settings.deploy.ready_timeout_s)
    except KeyboardInterrupt:  # the deploy was interrupted: leave nothing half-started behind
        process.stop(pid, marker=dep.id, grace_s=ctx.settings.deploy.stop_grace_s)
        records.update(reg, dep.id, state="failed", error="interrupted", stopped_at=now())
        ctx.audit(action=action, result="failed", reason="interrupted", **common)
        raise
    if error:
        process.stop(pid, marker=dep.id, grace_s=ctx.settings.deploy.stop_grace_s)
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


def _server_spec(
    ctx: DeployContext,
    servable: Servable,
    env: EnvSettings,
    bundle: Path,
    *,
    port: int,
    folder: Path,
    deployment_id: str,
    takes_over: bool,
) -> ServerSpec:
    """The spec of a deployment's server: [deploy.ENV]'s processes, keys where required, the
    port shared with the deployment it replaces (listening only once it can answer)."""
    keys = ctx.settings.keys
    return server_spec(
        servable,
        bundle,
        ctx.settings.serve,
        inference=env.inference,
        workers=env.workers,
        api_servers=env.api_servers,
        env=env.name,
        state_dir=str(folder),
        deployment=deployment_id,
        host=env.host,
        port=port,
        max_batch=env.max_batch,
        keys=KeyCheck(str(ctx.ws.project.registry_path), keys.refresh_s, keys.flag_interval_s)
        if env.require_keys
        else None,
        reuse_port=True,
        listen_when_ready=takes_over,
        show_errors=env.name != "prod",
    )


def _wait_ready(folder: Path, pid: int, timeout_s: float) -> str | None:
    """None once the server says every worker is ready; else why it will not be."""
    import time

    from mllib.runtime.processes import is_alive

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_status(folder)
        if status.get("pid") == pid and status.get("state") == "ready":
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
    if dep.pid:
        process.stop(dep.pid, marker=dep.id, grace_s=ctx.settings.deploy.stop_grace_s)
    records.update(ctx.ws.registry, dep.id, state=state, stopped_at=now(), replaced_by=replaced_by)
