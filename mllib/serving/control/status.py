"""What `mllib deploy status` shows: per environment, what is deployed where, and its live
requests/s, p50/p99 latency and error rate read from the server's own /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mllib.serving.control import records
from mllib.serving.control.deploy import DeployContext, reconcile
from mllib.serving.control.paths import LOG_FILE
from mllib.serving.control.scrape import Totals, quantile, scrape
from mllib.serving.control.settings import ENVS
from mllib.serving.spec import SPEC_FILE

FIELDS = (
    "env", "state", "url", "model", "version", "run_id", "workers", "api_servers",
    "deployment_id", "pid", "user", "created_at", "live_at", "error", "log_path",
)  # fmt: skip
EXTRA = ("inference",)  # read from the deployment's server spec


def _inference(dep: records.Deployment) -> str | None:
    """inline or worker, as the deployment's server was told (None if its folder is gone).
    Specs written before the setting existed ran LitServe workers."""
    import json

    try:
        return json.loads((Path(dep.dir or "") / SPEC_FILE).read_text()).get("inference", "worker")
    except (OSError, ValueError, AttributeError):
        return None


STATS_KEYS = ("rps", "p50_ms", "p99_ms", "error_rate", "requests_total", "window")


def live_stats(first: Totals | None, second: Totals | None, window_s: float) -> dict[str, Any]:
    """req/s over the window; p50/p99 and error rate over the window when it saw requests, else
    since the server started (`window` says which)."""
    if second is None:
        return dict.fromkeys(STATS_KEYS, None) | {"reachable": False}
    delta = second.minus(first) if first is not None else second
    scope, basis = ("window", delta) if delta.requests > 0 else ("since start", second)

    def ms(q: float) -> float | None:
        value = quantile(q, basis.buckets)
        return None if value is None else round(value * 1000, 3)

    return {
        "reachable": True,
        "rps": round(delta.requests / window_s, 2) if first is not None else None,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "error_rate": round(basis.server_errors / basis.requests, 4) if basis.requests else None,
        "requests_total": int(second.requests),
        "window": scope,
    }


def status(
    ctx: DeployContext, env: str | None = None, *, window_s: float = 1.0
) -> list[dict[str, Any]]:
    """One entry per environment (both, or `env`)."""
    reconcile(ctx.ws)
    envs = [env] if env else list(ENVS)
    for name in envs:
        ctx.settings.deploy.env(name)
    rows = []
    for name in envs:
        dep = records.live(ctx.ws.registry, name) or records.latest(ctx.ws.registry, name)
        row = {**dict.fromkeys(FIELDS + EXTRA), "env": name, "state": "none"}
        if dep is not None:
            row.update({f: getattr(dep, "id" if f == "deployment_id" else f) for f in FIELDS[1:]})
            row["inference"] = _inference(dep)
        rows.append(row)
    live = [r for r in rows if r["state"] == "live"]
    first = {r["env"]: scrape(r["url"]) for r in live}
    if live:
        time.sleep(window_s)
    for row in live:
        row["stats"] = live_stats(first[row["env"]], scrape(row["url"]), window_s)
    return rows


def log_source(ctx: DeployContext, env: str) -> tuple[Path, Callable[[], bool]]:
    """The log of `env`'s current (else newest) deployment, and whether its server still runs."""
    from mllib.errors import NotFoundError
    from mllib.runtime.processes import is_alive

    ctx.settings.deploy.env(env)
    dep = records.live(ctx.ws.registry, env) or records.latest(ctx.ws.registry, env)
    if dep is None:
        raise NotFoundError(f"Nothing was ever deployed to {env}")
    path = Path(dep.log_path or Path(dep.dir or ".") / LOG_FILE)
    return path, lambda: is_alive(dep.pid, dep.pid_ctime)
