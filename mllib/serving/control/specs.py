"""What a deployment's processes are started with: the spec of its controller (FleetSpec) and
of every replica of a version (ServerSpec), from the settings of its environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.credentials import configured_server
from mllib.errors import UsageError
from mllib.serving.control.context import DeployContext
from mllib.serving.control.fleet import FleetSpec
from mllib.serving.control.servable import server_spec
from mllib.serving.control.settings import EnvSettings, check_replicas
from mllib.serving.spec import KeyCheck, PythonEnv, Servable, ServerSpec


def replica_spec(
    ctx: DeployContext,
    servable: Servable,
    env: EnvSettings,
    bundle: Path,
    deployment_id: str,
    python_env: PythonEnv,
) -> ServerSpec:
    """What every replica of `servable` on `env` runs: [deploy.ENV]'s processes, keys where
    required (also on a replica's own port), [serve]'s limits, with `python_env`'s Python. Each
    replica's port, folder and link are its own (the controller fills them in)."""
    return server_spec(
        servable,
        bundle,
        ctx.settings.serve,
        inference=env.inference,
        workers=env.workers,
        api_servers=env.api_servers,
        env=env.name,
        state_dir="",
        host="127.0.0.1",
        port=0,
        max_batch=env.max_batch,
        keys=key_check(ctx) if env.require_keys else None,
        show_errors=env.name != "prod",
        deployment=deployment_id,
        python_env=python_env,
    )


def key_check(ctx: DeployContext) -> KeyCheck:
    keys = ctx.settings.keys
    return KeyCheck(str(ctx.ws.project.registry_path), keys.refresh_s, keys.flag_interval_s)


def fleet_spec(
    ctx: DeployContext,
    servable: Servable,
    env: EnvSettings,
    bundle: Path,
    *,
    port: int,
    folder: Path,
    deployment_id: str,
    replicas: tuple[int | None, int | None],
    python_env: PythonEnv,
    agents: list[dict[str, Any]] | None = None,
    env_plan: dict[str, Any] | None = None,
) -> FleetSpec:
    """The spec of a deployment's controller: its servers' spec, the environment's port (its
    stable server shares it with the deployment it replaces), how it scales and judges rollouts."""
    serve, rules = ctx.settings.serve, ctx.settings.deploy
    low, high = replicas
    low = env.min_replicas if low is None else low
    high = env.max_replicas if high is None else high
    check_replicas(low, high, "--min-replicas/--max-replicas")
    return FleetSpec(
        deployment=deployment_id,
        env=env.name,
        dir=str(folder),
        registry_path=str(ctx.ws.project.registry_path),
        user=ctx.user,
        stable=replica_spec(ctx, servable, env, bundle, deployment_id, python_env),
        host=env.host,
        port=port,
        scaling=serve.scaling(low, high),
        rollout=ctx.settings.rollout,
        cooldown={
            "cooldown_base_s": rules.cooldown_base_s,
            "cooldown_max_s": rules.cooldown_max_s,
            "quiet_period_s": rules.quiet_period_s,
        },
        ready_timeout_s=rules.ready_timeout_s,
        stop_grace_s=rules.stop_grace_s,
        log_max_mb=rules.log_max_mb,
        log_keep=rules.log_keep,
        restart_limit=rules.restart_limit,
        restart_window_s=rules.restart_window_s,
        restart_backoff_s=rules.restart_backoff_s,
        agents=agents or [],
        store=str(ctx.ws.project.store_path) if agents else "",
        env_plan=env_plan,
        team_server=configured_server(ctx.ws.project.config),
    )


def placement(ctx: DeployContext, agents: list[str] | None) -> list[dict[str, Any]]:
    """The agents a new deployment's replicas run on, one each (`--agents`, else [serve]
    placement = "agents"; none: this machine), as their AgentSpecs' fields."""
    from mllib.agents.config import get_agent

    serve = ctx.settings.serve
    names = agents if agents else (serve.agents if serve.placement == "agents" else [])
    if len(set(names)) != len(names):
        raise UsageError(f"--agents names an agent twice: {','.join(names)}")
    specs = [get_agent(name, ctx.ws.project.config) for name in names]
    return [{**spec.to_json()} for spec in specs]
