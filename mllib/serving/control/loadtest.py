"""`mllib loadtest --env staging`: the supported way to load-test, never against prod.

Drives bounded load with an async HTTP client, either a fixed number of requests in flight
(`--concurrency`) or a fixed arrival rate (`--rps`, with in-flight requests capped), for a fixed
time; measures every request; says whether the deployment passed ([loadtest] pass_* settings);
stores the result in the registry, where `mllib deploy --env prod` looks for it.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mllib.errors import NotFoundError, PolicyError, UsageError
from mllib.registry.runs import now
from mllib.serving.clock import iso
from mllib.serving.control import records
from mllib.serving.control.deploy import DeployContext, reconcile
from mllib.serving.control.settings import LoadtestSettings

HISTOGRAM_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, math.inf)


@dataclass
class Tally:
    """What came back so far."""

    started: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful or not
    statuses: Counter = field(default_factory=Counter)  # "200", "429", "error:ConnectError", ...
    errors: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def add(self, seconds: float, status: str, ok: bool) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1
        if not ok:
            self.errors += 1


@dataclass(frozen=True)
class Plan:
    env: str
    url: str
    body: bytes
    duration_s: float
    concurrency: int
    rps: float | None
    timeout_s: float
    headers: dict[str, str]


@dataclass
class Result:
    id: str
    env: str
    deployment_id: str
    model: str
    version: int | None
    mode: str
    concurrency: int
    target_rps: float | None
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_rate: float
    passed: bool
    failed_checks: list[str]
    statuses: dict[str, int]
    histogram: list[list[float | None]]  # [upper bound ms (None: above the last), count]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(latencies_s: list[float]) -> list[list[float]]:
    counts = [0] * len(HISTOGRAM_MS)
    for value in latencies_s:
        ms = value * 1000
        for i, bound in enumerate(HISTOGRAM_MS):
            if ms <= bound:
                counts[i] += 1
                break
    return [[None if math.isinf(b) else b, n] for b, n in zip(HISTOGRAM_MS, counts, strict=True)]


def checks(result: Result, settings: LoadtestSettings) -> list[str]:
    """What kept the load test from passing ([] when it passed)."""
    failed = []
    if result.requests < settings.pass_min_requests:
        failed.append(f"{result.requests} requests < {settings.pass_min_requests} needed")
    if result.error_rate > settings.pass_max_error_rate:
        failed.append(f"error rate {result.error_rate:.2%} > {settings.pass_max_error_rate:.2%}")
    if result.p99_ms is None or result.p99_ms > settings.pass_max_p99_ms:
        shown = "n/a" if result.p99_ms is None else f"{result.p99_ms:.1f}ms"
        failed.append(f"p99 {shown} > {settings.pass_max_p99_ms:g}ms")
    return failed


async def drive(plan: Plan, tally: Tally, on_tick: Callable[[Tally], None] | None = None) -> None:
    """Send requests until the plan's duration has passed; at most `concurrency` in flight."""
    import httpx

    limits = httpx.Limits(
        max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency
    )
    headers = {"content-type": "application/json", **plan.headers}
    deadline = tally.started + plan.duration_s
    async with httpx.AsyncClient(
        base_url=plan.url, limits=limits, timeout=plan.timeout_s
    ) as client:

        async def one() -> None:
            began = time.perf_counter()
            try:
                response = await client.post("/predict", content=plan.body, headers=headers)
                tally.add(
                    time.perf_counter() - began,
                    str(response.status_code),
                    response.status_code < 400,
                )
            except httpx.HTTPError as exc:
                tally.add(time.perf_counter() - began, f"error:{type(exc).__name__}", False)

        async def closed_loop() -> None:
            while time.perf_counter() < deadline:
                await one()

        async def open_loop() -> None:
            slots = asyncio.Semaphore(plan.concurrency)
            interval = 1.0 / plan.rps
            tasks = set()
            next_at = time.perf_counter()
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                if slots.locked():  # all in flight: this arrival is skipped, the load stays bounded
                    tally.statuses["skipped"] += 1
                    continue
                await slots.acquire()
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))
            if tasks:
                await asyncio.gather(*tasks)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.25)
                if on_tick:
                    on_tick(tally)

        tick = asyncio.create_task(ticker())
        try:
            if plan.rps:
                await open_loop()
            else:
                await asyncio.gather(*(closed_loop() for _ in range(plan.concurrency)))
        finally:
            tick.cancel()
            if on_tick:
                on_tick(tally)


def summarize(
    plan: Plan, tally: Tally, elapsed: float, dep: records.Deployment, settings: LoadtestSettings
) -> Result:
    ordered = sorted(tally.latencies)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    result = Result(
        id="lt" + secrets.token_hex(5),
        env=plan.env,
        deployment_id=dep.id,
        model=dep.model,
        version=dep.version,
        mode="rps" if plan.rps else "concurrency",
        concurrency=plan.concurrency,
        target_rps=plan.rps,
        duration_s=round(elapsed, 3),
        requests=tally.requests,
        errors=tally.errors,
        rps=round(tally.requests / elapsed, 2) if elapsed > 0 else 0.0,
        p50_ms=ms(percentile(ordered, 0.50)),
        p95_ms=ms(percentile(ordered, 0.95)),
        p99_ms=ms(percentile(ordered, 0.99)),
        max_ms=ms(ordered[-1] if ordered else None),
        error_rate=round(tally.errors / tally.requests, 6) if tally.requests else 1.0,
        passed=False,
        failed_checks=[],
        statuses=dict(tally.statuses),
        histogram=histogram(tally.latencies),
    )
    result.failed_checks = checks(result, settings)
    result.passed = not result.failed_checks
    return result


def read_input(text: str, max_bytes: int) -> bytes:
    """A request body from JSON text, @file.json or - (stdin), at most `max_bytes`, checked to
    be JSON."""
    from mllib.encoding import from_json
    from mllib.request_input import read_request

    data, source = read_request(text, max_bytes=max_bytes)
    try:
        from_json(data)
    except ValueError as exc:
        raise UsageError(f"The request from {source} is not valid JSON: {exc}") from None
    return data


def loadtest(
    ctx: DeployContext,
    env: str,
    *,
    duration_s: float | None = None,
    concurrency: int | None = None,
    rps: float | None = None,
    input_text: str | None = None,
    key: str | None = None,
    on_tick: Callable[[Tally, float], None] | None = None,
) -> Result:
    """Load-test the deployment live on `env` (staging only) and record the result."""
    settings = ctx.settings.loadtest
    if env == "prod":
        ctx.audit(
            action="loadtest", result="refused", env=env, reason="load tests never target prod"
        )
        raise PolicyError(
            "Refused: load tests never target prod; prod is for real traffic, with per-key rate limits",
            hint="Load-test the same version on staging: mllib loadtest --env staging",
        )
    ctx.settings.deploy.env(env)
    if rps is not None and concurrency is not None:
        raise UsageError("Give --rps or --concurrency, not both")
    from mllib.ranges import Range

    duration = settings.duration_s if duration_s is None else duration_s
    Range(0, settings.max_duration_s, low_open=True).check(
        duration, "--duration", hint="[loadtest] max_duration_s in mllib.toml sets the most."
    )
    if rps is not None:
        Range(0, settings.max_rps, low_open=True).check(
            rps, "--rps", hint="[loadtest] max_rps in mllib.toml sets the most."
        )
    inflight = (
        settings.max_concurrency if rps is not None else (concurrency or settings.concurrency)
    )
    Range(1, settings.max_concurrency, integer=True).check(
        inflight, "--concurrency", hint="[loadtest] max_concurrency in mllib.toml sets the most."
    )
    text = input_text or settings.input
    if not text:
        raise UsageError(
            "A load test needs a request body for the model",
            hint="""Pass --input '{"x": 1}' (or @request.json), or set [loadtest] input in mllib.toml.""",
        )
    body = read_input(text, int(ctx.settings.serve.max_body_mb * 1e6))
    reconcile(ctx.ws)
    dep = records.live(ctx.ws.registry, env)
    if dep is None:
        raise NotFoundError(
            f"Nothing is live on {env} to load-test",
            hint=f"Deploy first: mllib deploy MODEL --env {env}",
        )
    plan = Plan(
        env=env,
        url=dep.url or "",
        body=body,
        duration_s=duration,
        concurrency=inflight,
        rps=rps,
        timeout_s=settings.request_timeout_s,
        headers={"authorization": f"Bearer {key}"} if key else {},
    )
    tally = Tally(started=time.perf_counter())
    tick = (lambda t: on_tick(t, duration)) if on_tick else None
    asyncio.run(drive(plan, tally, tick))
    elapsed = time.perf_counter() - tally.started
    result = summarize(plan, tally, elapsed, dep, settings)
    _record(ctx, result, dep)
    return result


def _record(ctx: DeployContext, result: Result, dep: records.Deployment) -> None:
    reg = ctx.ws.registry
    ts = ctx.clock.time()
    with reg.transaction():
        reg.db["loadtests"].insert(
            {
                **{
                    k: v
                    for k, v in result.as_dict().items()
                    if k not in ("failed_checks", "statuses", "histogram")
                },
                "artifact": dep.artifact,
                "user": ctx.user,
                "ts": ts,
                "started_at": iso(ts - result.duration_s),
                "ended_at": now(),
                "passed": int(result.passed),
                "failed_checks": json.dumps(result.failed_checks),
                "statuses": json.dumps(result.statuses),
                "histogram": json.dumps(result.histogram),
            }
        )
        ctx.audit(
            action="loadtest",
            result="passed" if result.passed else "failed",
            env=result.env,
            model=result.model,
            version=result.version,
            deployment_id=dep.id,
            reason="; ".join(result.failed_checks) or None,
            detail={
                "id": result.id,
                "rps": result.rps,
                "p99_ms": result.p99_ms,
                "error_rate": result.error_rate,
            },
        )
