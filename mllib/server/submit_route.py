"""`POST /api/v1/runs` answered in front of FastAPI: the submission path every client hammers.

FastAPI's routing, dependency solving, middleware and response encoding cost a submission more
CPU than recording it does (profiled with py-spy on both databases). So an ordinary submission,
a JSON body with a bearer token, is handled here: the token checked through the server's cache
(mllib.server.tokencache), the body validated with the API's own model in one pass of pydantic,
the run queued for the group commit (mllib.server.commits) and answered with the API's answer
and errors. Anything else (no token, another content type, a body over 16 MB or one that does
not validate) goes on to the FastAPI route unchanged, which answers 401 or 422 its usual way and
is what /openapi.json documents.

>>> server_app = SubmitRoute(app, commits, tokens, max_queued=10_000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

from mllib.server.api import SubmissionBody
from mllib.server.app import error_answer, submission_of, submitted
from mllib.server.commits import GroupCommit
from mllib.server.tokencache import TokenCache

PATH = "/api/v1/runs"
MAX_BODY = 16 << 20  # larger bodies go on to FastAPI, as do malformed ones

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class SubmitRoute:
    """An ASGI app: submissions it can take alone, answered here; the rest passed to `app`."""

    def __init__(self, app: App, commits: GroupCommit, tokens: TokenCache, max_queued: int) -> None:
        self.app, self.commits, self.tokens, self.max_queued = app, commits, tokens, max_queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        token = _bearer(headers.get(b"authorization", b""))
        if not token or not headers.get(b"content-type", b"").startswith(b"application/json"):
            return await self.app(scope, receive, send)
        body, complete = await _read(receive)
        if not complete:
            return await self.app(scope, _replay(body, receive), send)
        try:
            parsed = SubmissionBody.model_validate_json(body)
        except ValidationError:  # FastAPI answers 422, naming the field
            return await self.app(scope, _replay(body, receive), send)
        sub = submission_of(parsed)
        try:
            user = await self.tokens.user(token)
            limit = user.max_queued if user.max_queued is not None else self.max_queued
            accepted = await self.commits.submit_async(user, sub, limit)
        except Exception as exc:
            status, answer, extra = error_answer(exc)
            if status == 500:
                raise
            await _respond(send, status, json.dumps(answer).encode(), extra)
            return None
        status = 201 if accepted.created else 200
        await _respond(send, status, submitted(accepted).model_dump_json().encode(), {})
        return None


def _bearer(value: bytes) -> str:
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The request's body, and whether it was read whole (False: it passed MAX_BODY)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return body, False
        if not message.get("more_body", False):
            return body, True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` first, then whatever is left of the request."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": len(body) > MAX_BODY}
        return await receive()

    return again


async def _respond(send: Send, status: int, body: bytes, extra: dict[str, str]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
