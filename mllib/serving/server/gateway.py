"""The HTTP front of a server: an ASGI app in front of LitServe's FastAPI app in each API server.

It answers POST /predict itself: request id, API key, per-key rate limit, body size, the
prediction (made in this process, or by a worker process: see inference.py), metrics and one
JSON log line per request. It also answers GET /health (truthful: every worker loaded and alive,
not draining) and GET /metrics (every process's metrics added up). Everything else (/docs, /openapi.json,
/info) goes on to LitServe's FastAPI app. Skipping FastAPI's routing, validation and response
encoding on the hot path is where much of the speed over a bare LitServe server comes from.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

import orjson

from mllib.serving import logs
from mllib.serving.server import metrics
from mllib.serving.server.board import WorkerBoard, check_health
from mllib.serving.server.inference import InlineInference, Predictor, WorkerInference
from mllib.serving.server.keycheck import KeyVerifier, flag_key
from mllib.serving.server.logwriter import LineWriter
from mllib.serving.server.modelapi import ModelAPI
from mllib.serving.server.ratelimit import SharedBuckets
from mllib.serving.spec import ServerSpec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
JSON_TYPE = (b"content-type", b"application/json")
LOADTEST_HINT = "Load-test on staging instead: mllib loadtest --env staging"

UNAUTHORIZED = {
    "missing": "This endpoint needs an API key: send the header 'Authorization: Bearer KEY'.",
    "malformed": "The Authorization header must be 'Bearer mlk_...' with a key from `mllib keys create`.",
    "unknown": "This API key is not valid for this environment.",
    "revoked": "This API key was revoked.",
    "unavailable": "API keys cannot be checked right now; try again shortly.",
}


class Gateway:
    """Everything the middleware needs: made once in the server's main process before the fork
    (the spec, the shared worker board and rate-limit buckets, the model's LitAPI), then set up
    in each API server's own process by `per_process`."""

    def __init__(self, spec: ServerSpec, board: WorkerBoard, api: ModelAPI) -> None:
        self.spec = spec
        self.labels = spec.labels
        self.board = board
        self.api = api  # loaded in each API server's process when inline
        self.buckets = (
            SharedBuckets(flag_interval_s=spec.keys.flag_interval_s) if spec.keys else None
        )
        self.server: Any = None  # the LitServer, set once it exists (worker mode asks its workers)

    def per_process(self, slot: int, load_first: bool) -> None:
        """Set up what API server number `slot` needs of its own, in its process before it
        serves. Inline, it loads the model at start-up: before listening with `load_first`, else
        while /health says loading."""
        spec = self.spec
        self.load_first = load_first
        self.metrics = metrics.HttpMetrics(self.labels)
        self.verifier = (
            KeyVerifier(Path(spec.keys.registry_path), spec.env, spec.keys.refresh_s)
            if spec.keys
            else None
        )
        self.predictor: Predictor
        if spec.inline:
            self.predictor = InlineInference(self.api, slot, spec.timeout_s, spec.max_batch)
        else:
            self.predictor = WorkerInference(self.server, self.board, spec.timeout_s)
        self.uids = itertools.count()
        self.id_prefix = secrets.token_hex(5)  # request ids: this prefix and a counter
        self.static = {"time": "", **self.labels, "deployment": spec.deployment}
        self.log = LineWriter(spec.log_format)
        # API servers end with os._exit: multiprocessing runs its finalizers, not atexit's.
        Finalize(self, self.log.close, exitpriority=10)
        if self.verifier is not None:
            self.verifier.start()


class ServingMiddleware:
    """The ASGI app each API server serves: /predict, /health and /metrics here, the rest on to
    LitServe's FastAPI app."""

    def __init__(self, app: Callable, gateway: Gateway) -> None:
        self.app = app
        self.gw = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, self._on_lifespan(send))
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/predict":
                return await self.predict(scope, receive, send)
            if path == "/health":
                return await self.health(send)
            if path in ("/metrics", "/metrics/"):
                return await _respond(
                    send, 200, metrics.render(), [(b"content-type", metrics.CONTENT_TYPE.encode())]
                )
        await self.app(scope, receive, send)

    def _on_lifespan(self, send: Send) -> Send:
        async def forward(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.gw.predictor.start(wait=self.gw.load_first)
            elif message["type"] == "lifespan.shutdown.complete":
                self.gw.log.close()  # every request's line is written before the server exits
            await send(message)

        return forward

    async def health(self, send: Send) -> None:
        state = check_health(self.gw.board)
        body = {"status": state.status, **self.gw.labels}
        if state.detail:
            body["detail"] = state.detail
        await _respond(send, 200 if state.ok else 503, orjson.dumps(body), [JSON_TYPE])

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else f"{gw.id_prefix}{next(gw.uids):x}"
        extra = [(b"x-request-id", request_id.encode())]
        key_id = None
        reason: str | None = None
        if scope["method"] != "POST":
            status, body, reason = 405, _error("Use POST for /predict.", request_id), "method"
            extra.append((b"allow", b"POST"))
        else:
            status, body, reason, key_id = await self._predict(
                scope, receive, headers, request_id, extra
            )
        await _respond(send, status, body, [JSON_TYPE, *extra])
        elapsed = time.perf_counter() - started
        gw.metrics.record(status, elapsed, reason)
        line = gw.static.copy()
        line["time"] = logs.now_iso()
        line.update(
            event="request",
            method=scope["method"],
            path="/predict",
            status=status,
            latency_ms=round(elapsed * 1000, 3),
            key_id=key_id,
            request_id=request_id,
        )
        gw.log.write(line)

    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        headers: dict[bytes, bytes],
        request_id: str,
        extra: list[tuple[bytes, bytes]],
    ) -> tuple[int, bytes, str | None, str | None]:
        """(status, body, error reason for metrics, key id) of one POST /predict."""
        gw = self.gw
        key_id = None
        if gw.verifier is not None:
            auth = headers.get(b"authorization")
            verdict = gw.verifier.verify(auth.decode("latin-1") if auth else None)
            if verdict.error:
                extra.append((b"www-authenticate", b"Bearer"))
                hint = "Create a key with: mllib keys create --env " + gw.labels["env"]
                code = 503 if verdict.error == "unavailable" else 401
                return (
                    code,
                    _error(UNAUTHORIZED[verdict.error], request_id, hint),
                    "unauthorized",
                    None,
                )
            key = verdict.key
            assert key is not None
            key_id = key.id
            decision = gw.buckets.take(
                key.number, rate=key.rps, burst=key.burst, now=time.monotonic()
            )
            if not decision.allowed:
                wait = max(1, math.ceil(decision.retry_after_s))
                extra.append((b"retry-after", str(wait).encode()))
                if decision.flag:
                    self._flag(key.id, key.rps, key.burst)
                message = (
                    f"Rate limit exceeded for key {key.id}: {key.rps:g} requests/s "
                    f"(bursts of {key.burst:g}). Retry after {wait}s."
                )
                return 429, _error(message, request_id, LOADTEST_HINT), "rate_limited", key_id
        body = await _read_body(receive, gw.spec.max_body_bytes)
        if body is None:
            mb = gw.spec.max_body_bytes / 1e6
            return (
                413,
                _error(f"The request body is larger than {mb:g} MB.", request_id),
                "too_large",
                key_id,
            )
        if not gw.predictor.ready():
            health = check_health(gw.board)
            message = f"The model is not ready ({health.status}): {health.detail}"
            return (
                503,
                _error(message, request_id, "Poll GET /health until it answers 200."),
                "not_ready",
                key_id,
            )
        reply = await gw.predictor.answer(request_id, body)
        if reply is None:
            message = f"No prediction within {gw.spec.timeout_s:g}s."
            return 504, _error(message, request_id), "timeout", key_id
        status, payload = reply
        reason = None if status < 400 else ("bad_request" if status < 500 else "predict_error")
        return status, payload, reason, key_id

    def _flag(self, key_id: str, rps: float, burst: float) -> None:
        gw = self.gw
        if gw.spec.keys is None:
            return
        detail = {"rps": rps, "burst": burst, "deployment": gw.spec.deployment}
        gw.log.write(
            {
                **gw.static,
                "time": logs.now_iso(),
                "level": "warning",
                "event": "key_flagged",
                "key_id": key_id,
                "message": f"key {key_id} burst past its limit of {rps:g} requests/s",
            }
        )
        loop = asyncio.get_running_loop()
        registry = Path(gw.spec.keys.registry_path)
        loop.run_in_executor(None, flag_key, registry, key_id, gw.spec.env, detail)


def _error(message: str, request_id: str, hint: str | None = None) -> bytes:
    body = {"error": message, "error_id": request_id}
    if hint:
        body["hint"] = hint
    return orjson.dumps(body)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
