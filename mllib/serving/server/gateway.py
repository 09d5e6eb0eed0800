"""The HTTP front of a server: an ASGI app in front of LitServe's FastAPI app in each API server
(Gateway); in a deployment, each API server is also where requests are sent on to other
replicas and variants (router.py, link.py).

It answers POST /predict itself, on the connection (an Exchange, see wire.py; through ASGI
only for a request that asks for 100 Continue): request id, API key, per-key rate limit
(Admission), body size, the answer (a prediction made in this process or by a worker process,
see inference.py; or another replica's), metrics and one JSON log line per request. It also answers GET /health
(truthful: every worker loaded and alive, not draining) and GET /metrics (every process's
metrics added up). Everything else (/docs, /openapi.json, /info) goes on to LitServe's FastAPI
app. Skipping FastAPI's routing, validation and response encoding on the hot path is where much
of the speed over a bare LitServe server comes from. A replica also answers its front's requests
on a link (link.py) with the same model path, without HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from mllib.serving import logs
from mllib.serving.counters import DRAINING, LOADING, LOCAL, READY, Counters, ProcessCounters
from mllib.serving.server import link, metrics
from mllib.serving.server.board import Health, WorkerBoard, check_health
from mllib.serving.server.inference import InlineInference, Predictor, WorkerInference
from mllib.serving.server.keycheck import KeyVerifier, KnownKey, flag_key
from mllib.serving.server.litserve_internals import OneWriteHttpToolsProtocol
from mllib.serving.server.logwriter import LineWriter
from mllib.serving.server.modelapi import ModelAPI
from mllib.serving.server.ratelimit import SharedBuckets
from mllib.serving.server.router import Forbidden, NoVariant, Router, Target
from mllib.serving.server.wire import Answering, Exchange
from mllib.serving.spec import CODE_DIR, LITAPI, KeyCheck, ServerSpec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
JSON_TYPE = (b"content-type", b"application/json")
LOADTEST_HINT = "Load-test on staging instead: mllib loadtest --env staging"

log = logging.getLogger("mllib.serving")

UNAUTHORIZED = {
    "missing": "This endpoint needs an API key: send the header 'Authorization: Bearer KEY'.",
    "malformed": "The Authorization header must be 'Bearer mlk_...' with a key from `mllib keys create`.",
    "unknown": "This API key is not valid for this environment.",
    "revoked": "This API key was revoked.",
    "unavailable": "API keys cannot be checked right now; try again shortly.",
}


class Admission:
    """API keys and per-key rate limits, for a replica's gateway and for a deployment's front
    alike: made once in the main process before the fork (the shared buckets), the key reader
    started in each HTTP process (`start`)."""

    def __init__(self, keys: KeyCheck | None, env: str, deployment: str) -> None:
        self.keys = keys
        self.env = env
        self.deployment = deployment
        self.buckets = SharedBuckets(flag_interval_s=keys.flag_interval_s) if keys else None
        self.verifier: KeyVerifier | None = None

    def start(self) -> None:
        """In an HTTP process: read the keys, and keep them fresh from a thread."""
        if self.keys is not None:
            self.verifier = KeyVerifier(
                Path(self.keys.registry_path), self.env, self.keys.refresh_s
            )
            self.verifier.start()

    def admit(
        self, headers: dict[bytes, bytes], request_id: str, extra: list[tuple[bytes, bytes]]
    ) -> tuple[KnownKey | None, Refusal | None]:
        """(the caller's key, None), or (key or None, the refusal to answer with)."""
        if self.verifier is None:
            return None, None
        auth = headers.get(b"authorization")
        verdict = self.verifier.verify(auth.decode("latin-1") if auth else None)
        if verdict.error:
            extra.append((b"www-authenticate", b"Bearer"))
            hint = "Create a key with: mllib keys create --env " + self.env
            code = 503 if verdict.error == "unavailable" else 401
            body = error_json(UNAUTHORIZED[verdict.error], request_id, hint)
            return None, (code, body, "unauthorized")
        key = verdict.key
        assert key is not None and self.buckets is not None
        decision = self.buckets.take(
            key.number, rate=key.rps, burst=key.burst, now=time.monotonic()
        )
        if decision.allowed:
            return key, None
        wait = max(1, math.ceil(decision.retry_after_s))
        extra.append((b"retry-after", str(wait).encode()))
        if decision.flag:
            self._flag(key.id, key.rps, key.burst)
        message = (
            f"Rate limit exceeded for key {key.id}: {key.rps:g} requests/s "
            f"(bursts of {key.burst:g}). Retry after {wait}s."
        )
        return key, (429, error_json(message, request_id, LOADTEST_HINT), "rate_limited")

    def _flag(self, key_id: str, rps: float, burst: float) -> None:
        assert self.keys is not None
        detail = {"rps": rps, "burst": burst, "deployment": self.deployment}
        log.warning(
            f"key {key_id} burst past its limit of {rps:g} requests/s",
            extra={"event": "key_flagged", "key_id": key_id},
        )
        loop = asyncio.get_running_loop()
        registry = Path(self.keys.registry_path)
        loop.run_in_executor(None, flag_key, registry, key_id, self.env, detail)


Refusal = tuple[int, bytes, str]  # status, body, the reason metrics count it under


class Reply(NamedTuple):
    status: int
    body: bytes
    reason: str | None = None  # why it did not succeed, for the errors metric
    route: Route | None = None  # which variant and replica answered (in a deployment)


class Route(NamedTuple):
    variant: str
    version: str
    replica: str


class Gateway:
    """A server's gateway: made once in the server's main process before the fork (the spec, the
    shared worker board and rate-limit buckets, the model's LitAPI), then set up in each API
    server's own process by `per_process`.

    In a deployment, each API server is a replica of the stable variant: it predicts most
    requests itself and sends the rest (a canary's share, a shadow's copy, an overflow to a
    replica on another host) where the routes say (router.py). A server of a candidate answers
    forwarded requests on its link. Either way it counts what it does in the server's counters,
    which the deployment's controller reads."""

    def __init__(self, spec: ServerSpec, board: WorkerBoard, api: ModelAPI) -> None:
        self.admission = Admission(spec.keys, spec.env, spec.deployment)
        self.labels = spec.labels
        self.spec = spec
        self.board = board
        self.api = api  # loaded in each API server's process when inline
        self.max_body_bytes = spec.max_body_bytes
        self.timeout_s = spec.timeout_s
        self.load_first = False
        self.server: Any = None  # the LitServer, set once it exists (worker mode asks its workers)
        self.counters: ProcessCounters | None = None
        self.router: Router | None = None
        self.predict_paths = predict_paths(spec)
        self.local_route = Route(self.labels["variant"], self.labels["version"], "local")

    def per_process(self, slot: int, load_first: bool) -> None:
        """Set up what API server number `slot` needs of its own, in its process before it
        serves. Inline, it loads the model at start-up: before listening with `load_first`,
        else while /health says loading."""
        spec = self.spec
        self.slot = slot
        self.load_first = load_first
        self.uids = itertools.count()
        self.id_prefix = secrets.token_hex(5)  # request ids: this prefix and a counter
        self.static = {"time": "", **self.labels, "deployment": spec.deployment}
        self.log = LineWriter(spec.log_format)
        # API servers end with os._exit: multiprocessing runs its finalizers, not atexit's.
        Finalize(self, self.log.close, exitpriority=10)
        self.admission.start()
        OneWriteHttpToolsProtocol.answering = Answering(
            frozenset(path.encode() for path in self.predict_paths),
            self.max_body_bytes,
            self.exchange,
        )
        self.metrics = metrics.HttpMetrics(self.labels)
        self._metrics: dict[tuple[str, str], metrics.HttpMetrics] = {}
        self.predictor: Predictor
        if spec.inline:
            self.predictor = InlineInference(self.api, slot, spec.timeout_s)
        else:
            self.predictor = WorkerInference(self.server, self.board, spec.timeout_s)
        if spec.counters_path:
            self.counters = Counters.open(Path(spec.counters_path)).process(slot)
            self.counters.claim(os.getpid(), LOADING)
            OneWriteHttpToolsProtocol.on_connection = self.counters.connection
            if spec.routes_path:
                self.router = Router(
                    Path(spec.routes_path), self.counters, spec.timeout_s, self._shadow_answered
                )

    async def started(self) -> None:
        """In the HTTP process's event loop, before it serves."""
        await self.predictor.start(wait=self.load_first)
        if self.spec.link:
            address = link.process_address(self.spec.link, self.slot)
            # Held: a server object nobody holds is collected, and its socket closed.
            self.link_server = await link.serve(
                link.listen(address), self.spec.link_token, self.link_batch
            )
        if self.counters is not None:
            if self.predictor.ready():
                self.counters.set_state(READY)
            self.tending = asyncio.ensure_future(self._tend())

    def draining(self) -> None:
        """This API server is shutting down (DrainingServer says so first)."""
        if self.counters is not None:
            self.counters.set_state(DRAINING)

    async def _tend(self) -> None:
        """Say in the counters when the model is loaded; hand connections over to processes
        that have fewer (a process started by a scale-up has none of the clients' open
        connections: asked to close after their next response, some reconnect to it)."""
        counters = self.counters
        assert counters is not None
        while True:
            await asyncio.sleep(0.05)
            if counters.state == LOADING and self.predictor.ready():
                counters.set_state(READY)
            if counters.state == READY:
                share = fair_share(counters.counters)
                mine = counters.counters.info(counters.index).connections
                if share is not None and mine > share + 1:
                    OneWriteHttpToolsProtocol.hand_over(mine - share)
                    await asyncio.sleep(0.5)  # let them move before counting again

    def health(self) -> Health:
        return check_health(self.board, partial=self.counters is not None)

    def exchange(self, exchange: Exchange) -> None:
        """Answer a request to /predict taken straight off the connection (wire.py): request
        id, key, rate limit, body size, the answer, then metrics and the log line."""
        started = time.perf_counter()
        headers = exchange.headers
        request_id, extra, key, refusal = self.admit(exchange.method, headers)

        def done(reply: Reply) -> None:
            exchange.respond(reply.status, reply.body, extra)
            self.record(exchange.method, exchange.path, started, request_id, key, reply)

        if refusal is not None:
            done(refusal)
            return
        body = exchange.body
        if body is None:
            done(self.too_large(request_id))
            return
        self.reply_soon(request_id, body, key, headers, done)

    def admit(
        self, method: str, headers: dict[bytes, bytes]
    ) -> tuple[str, list[tuple[bytes, bytes]], KnownKey | None, Reply | None]:
        """A request's id, the headers its answer carries, its caller's key, and its refusal
        (None: admitted; its body is read next)."""
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            given if _REQUEST_ID.fullmatch(given) else f"{self.id_prefix}{next(self.uids):x}"
        )
        extra = [(b"x-request-id", request_id.encode())]
        if method != "POST":
            extra.append((b"allow", b"POST"))
            return (
                request_id,
                extra,
                None,
                Reply(405, error_json("Use POST for /predict.", request_id), "method"),
            )
        key, refusal = self.admission.admit(headers, request_id, extra)
        return request_id, extra, key, None if refusal is None else Reply(*refusal)

    def too_large(self, request_id: str) -> Reply:
        message = f"The request body is larger than {self.max_body_bytes / 1e6:g} MB."
        return Reply(413, error_json(message, request_id), "too_large")

    def record(
        self,
        method: str,
        path: str,
        started: float,
        request_id: str,
        key: KnownKey | None,
        reply: Reply,
    ) -> None:
        """Count an answered request in the metrics (under its variant) and log its line."""
        elapsed = time.perf_counter() - started
        route = reply.route
        self.metrics_for(route).record(reply.status, elapsed, reply.reason)
        status = reply.status
        line = {
            **self.static,  # "time" first, then the server's labels
            "time": logs.now_iso(),
            "level": "info" if status < 400 else "warning" if status < 500 else "error",
            "event": "request",
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
            "key_id": key.id if key else None,
            "request_id": request_id,
        }
        if route is not None:
            line["variant"], line["version"], line["replica"] = route
        self.log.write(line)

    def metrics_for(self, route: Route | None) -> metrics.HttpMetrics:
        if route is None or route.variant == self.labels["variant"]:
            return self.metrics
        found = self._metrics.get((route.variant, route.version))
        if found is None:
            labels = {**self.labels, "version": route.version, "variant": route.variant}
            found = self._metrics[(route.variant, route.version)] = metrics.HttpMetrics(labels)
        return found

    async def reply(
        self, request_id: str, body: bytes, key: KnownKey | None, headers: dict[bytes, bytes]
    ) -> Reply:
        """The answer to one admitted request with a body of an allowed size."""
        router = self.router
        if router is None:
            if self.counters is None:
                return _reply(*await self.link_answer(request_id, body))
            return await self._local(request_id, body, None)
        target = self._target(router, request_id, key, headers)
        if isinstance(target, Reply):
            return target
        return await self._routed(router, target, request_id, body)

    def reply_soon(
        self,
        request_id: str,
        body: bytes,
        key: KnownKey | None,
        headers: dict[bytes, bytes],
        done: Callable[[Reply], None],
    ) -> None:
        """`reply`, with the answer given to `done` on the event loop. A prediction by this
        process's own model (inline: most requests) takes no task, future or coroutine."""
        router = self.router
        if isinstance(self.predictor, InlineInference):
            if router is None:
                self._local_soon(request_id, body, None, done)
                return
            target = self._target(router, request_id, key, headers)
            if isinstance(target, Reply):
                done(target)
                return
            if target.replica is None:
                live = router.copy_to_shadow(request_id, body)
                self._local_soon(request_id, body, live, done)
                return
            routed = self._routed(router, target, request_id, body)
        else:
            routed = self.reply(request_id, body, key, headers)
        task = asyncio.ensure_future(routed)
        task.add_done_callback(functools.partial(_replied, done, request_id))

    def _target(
        self, router: Router, request_id: str, key: KnownKey | None, headers: dict[bytes, bytes]
    ) -> Target | Reply:
        """Where the routes send this request, or the refusal of a variant it may not force."""
        router.refresh()
        try:
            return router.target(key, headers)
        except Forbidden as exc:
            return Reply(403, error_json(str(exc), request_id), "forbidden")
        except NoVariant as exc:
            return Reply(409, error_json(str(exc), request_id), "bad_request")

    async def _routed(self, router: Router, target: Target, request_id: str, body: bytes) -> Reply:
        """The answer of the target's replica (or of this process when it cannot answer)."""
        live = router.copy_to_shadow(request_id, body)
        replica = target.replica
        reply = None
        if replica is not None:
            answer = await router.forward(replica, request_id, body)
            route = Route(target.variant.name, target.variant.version, replica.id)
            if answer is not None and answer[0] is None:
                message = f"No prediction within {self.timeout_s:g}s."
                reply = Reply(504, error_json(message, request_id), "timeout", route)
            elif answer is not None:
                reply = _reply(answer[0], answer[1], route)  # type: ignore[arg-type]
        if reply is None:  # stable here, or the replica could not answer: stable here instead
            reply = await self._local(request_id, body, live)
        elif live is not None:
            live.set_result((reply.status, reply.body))
        return reply

    async def _local(self, request_id: str, body: bytes, live: asyncio.Future | None) -> Reply:
        """This process's own prediction, counted in its LOCAL slot."""
        counters = self.counters
        assert counters is not None
        started = time.perf_counter()
        counters.begin(LOCAL)
        try:
            status, payload = await self.link_answer(request_id, body)
        except BaseException:  # cancelled: the client went away
            counters.end(LOCAL, 499, time.perf_counter() - started)
            raise
        counters.end(LOCAL, status, time.perf_counter() - started)
        if live is not None:
            live.set_result((status, payload))
        return _reply(status, payload, self.local_route)

    def _local_soon(
        self,
        request_id: str,
        body: bytes,
        live: asyncio.Future | None,
        done: Callable[[Reply], None],
    ) -> None:
        """`_local` (or, with no counters, `link_answer`) for an inline model, by callbacks."""
        counters = self.counters
        predictor = self.predictor
        assert isinstance(predictor, InlineInference)
        route = self.local_route if counters is not None else None
        started = time.perf_counter()
        if counters is not None:
            counters.begin(LOCAL)

        def answered(answer: tuple[int, bytes] | None) -> None:
            status, payload = self._late(request_id) if answer is None else answer
            if counters is not None:
                counters.end(LOCAL, status, time.perf_counter() - started)
            if live is not None:
                live.set_result((status, payload))
            done(_reply(status, payload, route))

        if predictor.ready():
            predictor.submit(request_id, body, answered)
        else:
            answered(self._not_ready(request_id))

    def _shadow_answered(
        self, variant: Any, replica: Any, status: int | None, seconds: float, differed: bool | None
    ) -> None:
        """A shadow's answer, counted under its variant (its client never sees it)."""
        route = Route(variant.name, variant.version, replica.id)
        reason = None if status is not None and status < 500 else "predict_error"
        found = self.metrics_for(route)
        found.record(status or 502, seconds, reason)
        if differed is not None:
            found.compared(differed)

    def link_batch(
        self, items: list[tuple[str, bytes]], done: Callable[[list[tuple[int, bytes]]], None]
    ) -> None:
        """Answer what a stable process forwarded in one write (request id, body): inline, as
        one hand-over to the predict thread; `done` gets the answers in order."""
        predictor = self.predictor
        if not predictor.ready():
            done([self._not_ready(request_id) for request_id, _ in items])
            return
        counters = self.counters
        started = time.perf_counter()
        if counters is not None:
            for _ in items:
                counters.begin(LOCAL)

        def finish(answers: list[tuple[int, bytes]]) -> None:
            if counters is not None:
                seconds = time.perf_counter() - started
                for status, _ in answers:
                    counters.end(LOCAL, status, seconds)
            done(answers)

        if isinstance(predictor, InlineInference):

            def settle(replies: list) -> None:
                finish(
                    [r if r is not None else self._late(items[i][0]) for i, r in enumerate(replies)]
                )

            predictor.answer_many(items, settle)
            return
        task = asyncio.ensure_future(
            asyncio.gather(*(self.link_answer(request_id, body) for request_id, body in items))
        )
        task.add_done_callback(lambda t: finish(t.result()))

    def _not_ready(self, request_id: str) -> tuple[int, bytes]:
        health = check_health(self.board)
        message = f"The model is not ready ({health.status}): {health.detail}"
        return 503, error_json(message, request_id, "Poll GET /health until it answers 200.")

    def _late(self, request_id: str) -> tuple[int, bytes]:
        return 504, error_json(f"No prediction within {self.timeout_s:g}s.", request_id)

    async def link_answer(self, request_id: str, body: bytes) -> tuple[int, bytes]:
        """The model's answer to one request."""
        if not self.predictor.ready():
            return self._not_ready(request_id)
        answer = await self.predictor.answer(request_id, body)
        return self._late(request_id) if answer is None else answer


def _replied(done: Callable[[Reply], None], request_id: str, task: asyncio.Future) -> None:
    """A routed request's task ended: its reply to `done` (a 500 if it failed)."""
    if not task.cancelled() and task.exception() is None:
        done(task.result())
        return
    error = "cancelled" if task.cancelled() else repr(task.exception())
    log.error(f"request {request_id} failed: {error}", extra={"event": "request_failed"})
    done(Reply(500, error_json("The request failed in the server.", request_id), "predict_error"))


def _reply(status: int, payload: bytes, route: Route | None = None) -> Reply:
    if status < 400:
        return Reply(status, payload, None, route)
    reason = {503: "not_ready", 504: "timeout"}.get(status)
    return Reply(
        status, payload, reason or ("bad_request" if status < 500 else "predict_error"), route
    )


def fair_share(counters: Counters) -> int | None:
    """Client connections per ready process (rounded up), when connections are uneven enough
    to move: some process holds two or more below it."""
    ready = [info for info in counters.infos() if info.state == "ready"]
    if len(ready) < 2:
        return None
    total = sum(info.connections for info in ready)
    share = -(-total // len(ready))
    if min(info.connections for info in ready) > share - 2:
        return None
    return share


class ServingMiddleware:
    """The ASGI app each HTTP process serves: /predict, /health and /metrics here, the rest on
    to LitServe's FastAPI app (a front has none: 404)."""

    def __init__(self, app: Callable, gateway: Gateway) -> None:
        self.app = app
        self.gw = gateway

    def draining(self) -> None:
        """Called by DrainingServer when this process starts shutting down."""
        self.gw.draining()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, self._on_lifespan(send))
        if scope["type"] == "http":
            path = scope["path"]
            if path in self.gw.predict_paths:
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
                await self.gw.started()
            elif message["type"] == "lifespan.shutdown.complete":
                self.gw.log.close()  # every request's line is written before the server exits
            await send(message)

        return forward

    async def health(self, send: Send) -> None:
        state = self.gw.health()
        body = {"status": state.status, **self.gw.labels}
        if state.detail:
            body["detail"] = state.detail
        await _respond(send, 200 if state.ok else 503, orjson.dumps(body), [JSON_TYPE])

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        """/predict through ASGI: a request that asks for `100 Continue` (see Gateway.exchange
        for the others)."""
        gw = self.gw
        started = time.perf_counter()
        method = scope["method"]
        headers = dict(scope["headers"])
        request_id, extra, key, reply = gw.admit(method, headers)
        if reply is None:
            body = await _read_body(receive, gw.max_body_bytes)
            if body is None:
                reply = gw.too_large(request_id)
            else:
                reply = await gw.reply(request_id, body, key, headers)
        await _respond(send, reply.status, reply.body, [JSON_TYPE, *extra])
        gw.record(method, scope["path"], started, request_id, key, reply)


RESERVED_PATHS = ("/health", "/metrics", "/metrics/", "/docs", "/openapi.json")


def predict_paths(spec: ServerSpec) -> frozenset[str]:
    """Where predictions are answered: /predict, and a LitServe API's own `api_path` as its
    file creates it (`MyAPI(api_path="/classify")`), unless that is one of the server's own."""
    paths = {"/predict"}
    servable = spec.servable
    if servable.kind == LITAPI:
        from mllib.discovery import constructor_args

        source = Path(spec.bundle_dir) / CODE_DIR / servable.model_file
        wanted = constructor_args(source, servable.model_class).get("api_path")
        if isinstance(wanted, str) and wanted.startswith("/") and wanted not in RESERVED_PATHS:
            paths.add(wanted.rstrip("/") or "/predict")
    return frozenset(paths)


def error_json(message: str, request_id: str, hint: str | None = None) -> bytes:
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
