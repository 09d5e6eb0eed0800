"""`mllib loadtest --env staging`: the supported way to load-test, never against prod.

Drives bounded load from several processes (loadgen.py): a fixed number of requests in flight
(`--concurrency`), or requests leaving at a fixed rate or along a ramp whatever the answers
(`--rate 500`, `--rate 50:1500`: an open model, in flight capped). It measures every request,
and reads the deployment's own /metrics before and after, so the server's p50/p99 and errors
stand beside the client's. When the client could not keep up (its processes used nearly all
their CPU, or the machine's CPUs were saturated) it says so, and the verdict uses the server's
figures, which the client's own delays cannot inflate. It says whether the deployment passed
([loadtest] pass_* settings) and stores the result, where `mllib deploy --env prod` looks for it.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mllib.errors import NotFoundError, PolicyError, UsageError
from mllib.registry.runs import now
from mllib.serving.clock import iso
from mllib.serving.control import loadgen, records
from mllib.serving.control.deploy import DeployContext, reconcile
from mllib.serving.control.scrape import Totals, quantile, scrape
from mllib.serving.control.settings import LoadtestSettings

HISTOGRAM_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, math.inf)
BOUND_SHARE = 0.85  # the client's processes used this much of their CPU: it was the limit
HOST_SATURATED = 95.0  # percent of the machine's CPUs busy: client and server competed


@dataclass
class Result:
    id: str
    env: str
    deployment_id: str
    model: str
    version: int | None
    mode: str  # concurrency, rps (a fixed rate) or ramp
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
    rate_from: float | None = None
    skipped: int = 0  # open model: arrivals not sent, every connection being busy
    server: dict[str, Any] = field(default_factory=dict)  # the server's own figures
    client: dict[str, Any] = field(default_factory=dict)  # workers, CPU, bound
    judged_on: str = "client"  # whose figures the verdict used: client or server

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(latencies_s: Any) -> list[list[float]]:
    counts = [0] * len(HISTOGRAM_MS)
    for value in latencies_s:
        ms = value * 1000
        for i, bound in enumerate(HISTOGRAM_MS):
            if ms <= bound:
                counts[i] += 1
                break
    return [[None if math.isinf(b) else b, n] for b, n in zip(HISTOGRAM_MS, counts, strict=True)]


def checks(figures: dict[str, Any], settings: LoadtestSettings) -> list[str]:
    """What kept the load test from passing ([] when it passed), on the figures given (the
    client's, or the server's: requests, error_rate, p99_ms)."""
    failed = []
    requests, error_rate, p99 = figures["requests"], figures["error_rate"], figures["p99_ms"]
    if requests < settings.pass_min_requests:
        failed.append(f"{requests} requests < {settings.pass_min_requests} needed")
    if error_rate is None or error_rate > settings.pass_max_error_rate:
        shown = "n/a" if error_rate is None else f"{error_rate:.2%}"
        failed.append(f"error rate {shown} > {settings.pass_max_error_rate:.2%}")
    if p99 is None or p99 > settings.pass_max_p99_ms:
        shown = "n/a" if p99 is None else f"{p99:.1f}ms"
        failed.append(f"p99 {shown} > {settings.pass_max_p99_ms:g}ms")
    return failed


def server_figures(before: Totals | None, after: Totals | None) -> dict[str, Any]:
    """The server's own requests, errors and p50/p99 over the test, from two reads of its
    /metrics (`reachable` false when it did not answer)."""
    if before is None or after is None:
        return {"reachable": False, "requests": 0, "errors": 0, "error_rate": None,
                "p50_ms": None, "p99_ms": None}  # fmt: skip
    delta = after.minus(before)

    def ms(q: float) -> float | None:
        value = quantile(q, delta.buckets)
        return None if value is None else round(value * 1000, 3)

    requests = int(delta.requests)
    errors = int(delta.server_errors)
    return {
        "reachable": True,
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else None,
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
    }


def parse_rate(text: str) -> tuple[float, float]:
    """`500` (a fixed rate) or `50:1500` (a ramp from 50 to 1500 requests/s), each end a finite
    rate above 0 (mllib.ranges: NaN and infinities are usage errors)."""
    from mllib.ranges import RATE

    low, sep, high = text.partition(":")
    for part in (low, high) if sep else (low,):
        try:
            float(part)
        except ValueError:
            raise UsageError(
                f"--rate must be requests/s, or FROM:TO for a ramp (like 50:1500), not {text!r}"
            ) from None
    start = float(RATE.parse(low, "--rate"))
    end = float(RATE.parse(high, "--rate")) if sep else start
    return start, end


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
    rate: str | None = None,
    input_text: str | None = None,
    key: str | None = None,
    workers: int | None = None,
    on_tick: Callable[[int, float, float], None] | None = None,
) -> Result:
    """Load-test the deployment live on `env` (staging only) and record the result.
    `on_tick(requests answered, seconds elapsed, duration)` reports progress."""
    settings = ctx.settings.loadtest
    if env == "prod":
        ctx.audit(
            action="loadtest", result="refused", env=env, reason="load tests never target prod"
        )
        raise PolicyError(
            "Refused: load tests never target prod; prod is for real traffic, with per-key rate limits",
            hint="Load-test the same version on staging: mllib loadtest --env staging",
        )
    ctx.settings.env(env)
    if sum(x is not None for x in (rps, rate, concurrency)) > 1:
        raise UsageError("Give one of --rate, --rps and --concurrency")
    from mllib.ranges import LOAD_WORKERS, Range

    rates = parse_rate(rate) if rate is not None else (rps, rps) if rps is not None else None
    duration = settings.duration_s if duration_s is None else duration_s
    Range(0, settings.max_duration_s, low_open=True).check(
        duration, "--duration", hint="[loadtest] max_duration_s in mllib.toml sets the most."
    )
    if rates is not None:
        for value in rates:
            Range(0, settings.max_rps, low_open=True).check(
                value,
                "--rps" if rate is None else "--rate",
                hint="[loadtest] max_rps in mllib.toml sets the most.",
            )
    inflight = (
        settings.max_concurrency if rates is not None else (concurrency or settings.concurrency)
    )
    Range(1, settings.max_concurrency, integer=True).check(
        inflight, "--concurrency", hint="[loadtest] max_concurrency in mllib.toml sets the most."
    )
    if workers is not None:
        LOAD_WORKERS.check(workers, "--workers")
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
    load = loadgen.Load(
        url=dep.url or "",
        body=body,
        headers={"Authorization": f"Bearer {key}"} if key else {},
        duration_s=duration,
        concurrency=0 if rates else inflight,
        rate_from=rates[0] if rates else 0.0,
        rate_to=rates[1] if rates else 0.0,
        max_in_flight=inflight,
        timeout_s=settings.request_timeout_s,
    )
    import psutil

    before = scrape(dep.url or "")
    psutil.cpu_percent()  # starts the machine's CPU measurement
    tick = (lambda done, elapsed: on_tick(done, elapsed, duration)) if on_tick else None
    generated = loadgen.run(load, workers=workers, on_progress=tick)
    host_cpu = psutil.cpu_percent()
    after = scrape(dep.url or "")
    result = summarize(load, generated, dep, settings, server_figures(before, after), host_cpu)
    _record(ctx, result, dep)
    return result


def summarize(
    load: loadgen.Load,
    generated: loadgen.Generated,
    dep: records.Deployment,
    settings: LoadtestSettings,
    server: dict[str, Any],
    host_cpu: float,
) -> Result:
    tally = generated.tally
    ordered = sorted(tally.latencies)
    elapsed = load.duration_s

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    requests = tally.requests
    bound = generated.cpu_share >= BOUND_SHARE or host_cpu >= HOST_SATURATED
    mode = "concurrency" if not load.open else "ramp" if load.rate_from != load.rate_to else "rps"
    statuses = dict(tally.statuses)
    if tally.skipped:
        statuses["skipped"] = tally.skipped
    result = Result(
        id="lt" + secrets.token_hex(5),
        env=dep.env,
        deployment_id=dep.id,
        model=dep.model,
        version=dep.version,
        mode=mode,
        concurrency=load.concurrency or load.max_in_flight,
        target_rps=load.rate_to if load.open else None,
        rate_from=load.rate_from if mode == "ramp" else None,
        duration_s=round(elapsed, 3),
        requests=requests,
        errors=tally.errors,
        rps=round(len(tally.latencies) / elapsed, 2) if elapsed > 0 else 0.0,
        p50_ms=ms(percentile(ordered, 0.50)),
        p95_ms=ms(percentile(ordered, 0.95)),
        p99_ms=ms(percentile(ordered, 0.99)),
        max_ms=ms(ordered[-1] if ordered else None),
        error_rate=round(tally.errors / requests, 6) if requests else 1.0,
        passed=False,
        failed_checks=[],
        statuses=statuses,
        histogram=histogram(tally.latencies),
        skipped=tally.skipped,
        server=server,
        client={
            "workers": generated.workers,
            "cpu_share": round(generated.cpu_share, 3),
            "host_cpu_percent": round(host_cpu, 1),
            "bound": bound,
        },
        judged_on="server" if bound and server.get("reachable") else "client",
    )
    figures = server if result.judged_on == "server" else asdict(result)
    result.failed_checks = checks(figures, settings)
    result.passed = not result.failed_checks
    return result


def _record(ctx: DeployContext, result: Result, dep: records.Deployment) -> None:
    reg = ctx.ws.registry
    ts = ctx.clock.time()
    kept = {
        k: v
        for k, v in result.as_dict().items()
        if k not in ("failed_checks", "statuses", "histogram", "server", "client")
    }
    with reg.transaction():
        reg.db["loadtests"].insert(
            {
                **kept,
                "artifact": dep.artifact,
                "user": ctx.user,
                "ts": ts,
                "started_at": iso(ts - result.duration_s),
                "ended_at": now(),
                "passed": int(result.passed),
                "failed_checks": json.dumps(result.failed_checks),
                "statuses": json.dumps(result.statuses),
                "histogram": json.dumps(result.histogram),
                "server": json.dumps(result.server),
                "client": json.dumps(result.client),
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
                "server_p99_ms": result.server.get("p99_ms"),
                "error_rate": result.error_rate,
                "judged_on": result.judged_on,
            },
        )
