"""Every number of serving, deploys, keys and load tests, read from mllib.toml with its default.

[serve] is the dev server and the replicas' scaling, [deploy] the deployments and their rules
([deploy.staging] and [deploy.prod] override per environment), [keys] the API keys, [loadtest]
the load tests, [rollout] how canaries are judged and promoted.
mllib.toml.example documents each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from mllib.config import Config, read_table
from mllib.errors import ConfigError, UsageError
from mllib.serving.control.autoscale import Scaling
from mllib.serving.control.judge import Rollout, parse_steps
from mllib.serving.spec import INFERENCE_MODES, INLINE, http_processes

ENVS = ("staging", "prod")
PLACEMENTS = ("local", "agents")
T = TypeVar("T")


def check_inference(value: Any, where: str) -> str:
    if value not in INFERENCE_MODES:
        raise ConfigError(
            f'{where} must be "inline" or "worker", not {value!r}',
            hint="inline: each HTTP process holds the model (CPU models); worker: LitServe "
            "worker processes behind a queue (GPU models).",
        )
    return value


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


@dataclass(frozen=True)
class ServeSettings:
    """[serve]: the dev server (`mllib serve`), and the defaults deployments start from."""

    host: str = "127.0.0.1"
    port: int = 8000
    inference: str = INLINE  # inline or worker: where predict() runs
    workers: int = 1  # processes that each hold a copy of the model (inline: HTTP processes)
    api_servers: int = 1  # worker mode: HTTP processes in front of the workers
    timeout_s: float = 30.0  # a request waiting longer for its prediction gets 504
    max_body_mb: float = 10.0
    drain_s: float = 5.0  # on stop, in-flight requests get this long to finish
    restart_workers: bool = True  # a worker that dies is started again (503 meanwhile)
    max_batch: int = 32  # inline, a model with predict_batch answers up to this many at once
    # Deployments: replicas behind the front, scaled by the controller (autoscale.py).
    min_replicas: int = 1
    max_replicas: int = 0  # 0: one per CPU core
    target_inflight: float = 4.0  # requests in flight per replica
    p99_objective_ms: float = 100.0  # latency objective: nearing it adds a replica sooner
    scale_down_after_s: float = 300.0  # quiet this long before a replica is removed
    # Where a deployment's replicas run: "local" (this machine), or "agents": on `agents` (names
    # from `mllib agents list`), one on each, then placed by free capacity as they scale.
    placement: str = "local"
    agents: list = field(default_factory=list)

    def scaling(self, min_replicas: int, max_replicas: int) -> Scaling:
        return Scaling(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            target_inflight=self.target_inflight,
            p99_objective_ms=self.p99_objective_ms,
            scale_down_after_s=self.scale_down_after_s,
        )


@dataclass(frozen=True)
class EnvSettings:
    """[deploy.staging] / [deploy.prod]: where and how one environment runs."""

    name: str
    host: str
    port: int  # 0: a free port on the first deploy, then the environment keeps it
    workers: int
    api_servers: int  # HTTP processes (inline: = workers)
    require_keys: bool
    inference: str = INLINE
    max_batch: int = 32
    min_replicas: int = 1
    max_replicas: int = 0  # 0: one per CPU core


@dataclass(frozen=True)
class EnvTable:
    """[deploy.staging] / [deploy.prod] as written: what an environment changes of [deploy]."""

    host: str | None = None  # none: [deploy]'s
    port: int = 0  # 0: a free port on the first deploy, then the environment keeps it
    inference: str | None = None
    workers: int | None = None
    api_servers: int | None = None
    require_keys: bool | None = None  # none: on for prod (always), off for staging
    max_batch: int | None = None
    min_replicas: int | None = None  # none: [serve]'s
    max_replicas: int | None = None


@dataclass(frozen=True)
class DeploySettings:
    """[deploy]: deployments and the rules that put a cost on careless deploys."""

    host: str = "127.0.0.1"
    inference: str = INLINE
    workers: int = 1  # per replica
    api_servers: int = 1
    max_batch: int = 32
    ready_timeout_s: float = 180.0
    stop_grace_s: float = 20.0  # after SIGINT, then SIGKILL for whatever is left
    log_max_mb: float = 100.0  # server.log is rotated past this size (0: never)
    log_keep: int = 3  # rotated copies kept: server.log.1 (newest) ... server.log.3
    restart_limit: int = 5  # a controller dying this often within restart_window_s: failed
    restart_window_s: float = 300.0
    restart_backoff_s: float = 1.0  # the first restart's wait, doubled by each further one
    staging_window_s: float = 86400.0  # a staging load test counts for prod this long
    budget_burst: float = 3.0  # prod deploys a user may make back to back
    budget_refill_s: float = 14400.0  # one prod deploy comes back every this many seconds
    cooldown_base_s: float = 600.0  # cooldown after a first rollback or failed prod deploy
    cooldown_max_s: float = 86400.0  # doubling stops here
    quiet_period_s: float = 86400.0  # this long without a strike and the cooldown starts over
    admins: list = field(default_factory=list)  # who may --force; empty: anyone (audited)
    staging: EnvTable = field(default_factory=EnvTable)
    prod: EnvTable = field(default_factory=EnvTable)

    def env(self, name: str, serve: ServeSettings | None = None) -> EnvSettings:
        """Environment `name` as [deploy] and [deploy.NAME] (over `serve`'s replicas) set it."""
        serve = serve or ServeSettings()
        if name not in ENVS:
            raise UsageError(
                f"Unknown environment {name!r}", hint="Choose --env staging or --env prod."
            )
        table = self.staging if name == "staging" else self.prod
        require = _given(table.require_keys, name == "prod")
        if name == "prod" and require is not True:
            raise ConfigError(
                "mllib.toml: [deploy.prod] require_keys cannot be turned off",
                hint="Production always needs API keys; create them with `mllib keys create --env prod`.",
            )
        env = EnvSettings(
            name=name,
            host=_given(table.host, self.host),
            port=table.port,
            workers=_given(table.workers, self.workers),
            api_servers=_given(table.api_servers, self.api_servers),
            require_keys=require,
            max_batch=_given(table.max_batch, self.max_batch),
            inference=check_inference(
                _given(table.inference, self.inference), f"mllib.toml: [deploy.{name}] inference"
            ),
            min_replicas=_given(table.min_replicas, serve.min_replicas),
            max_replicas=_given(table.max_replicas, serve.max_replicas),
        )
        if min(env.workers, env.api_servers, env.max_batch, env.min_replicas) < 1:
            raise ConfigError(
                f"mllib.toml: [deploy.{name}] workers, api_servers, max_batch and min_replicas "
                "must be ≥ 1"
            )
        check_replicas(env.min_replicas, env.max_replicas, f"mllib.toml: [deploy.{name}]")
        return replace(env, api_servers=http_processes(env.inference, env.workers, env.api_servers))


@dataclass(frozen=True)
class KeySettings:
    """[keys]: API keys and their rate limits."""

    default_rps: float = 10.0  # requests per second a new key may make, on average
    burst_s: float = 2.0  # a key may burst this many seconds' worth of requests at once
    refresh_s: float = 1.0  # servers re-read keys this often (a revoke takes effect within it)
    flag_interval_s: float = 300.0  # a key bursting past its limit is flagged at most this often


@dataclass(frozen=True)
class LoadtestSettings:
    """[loadtest]: the supported way to load-test, and what passing means."""

    duration_s: float = 10.0
    concurrency: int = 8
    max_concurrency: int = 64
    max_rps: float = 2000.0
    max_duration_s: float = 300.0
    request_timeout_s: float = 10.0
    input: str = ""  # the request body as JSON, or @file.json
    pass_max_error_rate: float = 0.01
    pass_max_p99_ms: float = 100.0
    pass_min_requests: int = 50


def check_replicas(min_replicas: int, max_replicas: int, where: str) -> None:
    """max_replicas is 0 (one per core) or at least min_replicas."""
    if max_replicas and max_replicas < min_replicas:
        raise ConfigError(
            f"{where}: max_replicas ({max_replicas}) is below min_replicas ({min_replicas})",
            hint="Raise max_replicas, or set it to 0 for one replica per CPU core.",
        )


def check_placement(serve: ServeSettings, where: str) -> None:
    """placement is "local" or "agents", the latter with a list of agent names."""
    if serve.placement not in PLACEMENTS:
        raise ConfigError(
            f'{where}: [serve] placement must be "local" or "agents", not {serve.placement!r}',
            hint='"agents" runs one replica on each agent in [serve] agents.',
        )
    names = serve.agents
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f'{where}: [serve] agents must be a list of agent names, like ["gpu1"]')
    if serve.placement == "agents" and not names:
        raise ConfigError(
            f'{where}: [serve] placement = "agents" needs agents = ["NAME", ...]',
            hint="Name them from `mllib agents list`.",
        )


@dataclass(frozen=True)
class Settings:
    serve: ServeSettings
    deploy: DeploySettings
    keys: KeySettings
    loadtest: LoadtestSettings
    rollout: Rollout = field(default_factory=Rollout)

    def env(self, name: str) -> EnvSettings:
        """Environment `name`'s settings, replicas included."""
        return self.deploy.env(name, self.serve)

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        serve = read_table(ServeSettings, config, "serve", non_negative=True)
        check_inference(serve.inference, f"{config.where}: [serve] inference")
        if serve.max_batch < 1:
            raise ConfigError(f"{config.where}: [serve] max_batch must be ≥ 1 (1: no batching)")
        if serve.min_replicas < 1:
            raise ConfigError(f"{config.where}: [serve] min_replicas must be ≥ 1")
        check_replicas(serve.min_replicas, serve.max_replicas, f"{config.where}: [serve]")
        check_placement(serve, config.where)
        if serve.target_inflight <= 0:
            raise ConfigError(f"{config.where}: [serve] target_inflight must be more than 0")
        rollout = read_table(Rollout, config, "rollout", non_negative=True)
        try:
            parse_steps(rollout.promote_steps)
        except ValueError as exc:
            raise ConfigError(f"{config.where}: [rollout] promote_steps: {exc}") from None
        if not 0 < rollout.shadow_percent <= 100:
            raise ConfigError(f"{config.where}: [rollout] shadow_percent must be in (0, 100]")
        deploy = read_table(DeploySettings, config, "deploy", non_negative=True)
        if deploy.restart_limit < 1:
            raise ConfigError(
                f"{config.where}: [deploy] restart_limit must be ≥ 1 (1: never restart)"
            )
        return cls(
            serve=serve,
            deploy=deploy,
            keys=read_table(KeySettings, config, "keys", non_negative=True),
            loadtest=read_table(LoadtestSettings, config, "loadtest", non_negative=True),
            rollout=rollout,
        )
