"""Talking to a team server: an httpx client that sends the login token and turns the server's
JSON errors into mllib's (one line and a hint, the exit code the README gives).

Requests that are safe to repeat (reads, and submissions, which carry an idempotency key) are
retried with backoff on a dropped connection, a timeout and 503 (Retry-After honoured), so a
server restarting or its database recovering is waited out rather than reported. A 429 (a quota
reached) is reported at once, with when to come back.
"""

from __future__ import annotations

import time
from typing import Any

from mllib.credentials import configured_server, token_for
from mllib.errors import MllibError, NotFoundError, RuntimeUnavailableError, UsageError

RETRY_FOR_S = 60.0


class ServerError(MllibError):
    """The server refused a request (401, 409, 429...): its own message, its HTTP status, and
    the rest of its JSON answer (`details`)."""

    status: int | None = None
    details: dict[str, Any] | None = None


class Server:
    """A logged-in connection to one team server.

    >>> server = Server.connect()  # doctest: +SKIP
    >>> server.get("/api/v1/whoami")["name"]  # doctest: +SKIP
    'ana'
    """

    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        import httpx

        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    @classmethod
    def connect(
        cls, config: Any = None, url: str | None = None, *, timeout: float = 30.0
    ) -> Server:
        """The configured server with this user's token (a clear error when not logged in)."""
        url = url or configured_server(config)
        if url is None:
            raise UsageError("No team server is configured", hint="Log in with `mllib login URL`.")
        token = token_for(url)
        if token is None:
            raise UsageError(f"Not logged in to {url}", hint=f"Log in with `mllib login {url}`.")
        return cls(url, token, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Send a request; the response (2xx), else the server's error raised as MllibError."""
        import httpx

        deadline = time.monotonic() + (RETRY_FOR_S if retry else 0)
        pause = 0.1
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)
                    continue
                raise RuntimeUnavailableError(
                    f"Cannot reach the team server at {self.url}: {exc}",
                    hint="Check the URL (`mllib whoami`) and that the server runs.",
                ) from None
            if response.status_code == 503 and time.monotonic() < deadline:
                time.sleep(min(float(response.headers.get("Retry-After", pause)), 5.0))
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else None


def _error(response: Any) -> MllibError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    hint = body.get("hint") if isinstance(body, dict) else None
    if response.status_code == 422 and isinstance(body, dict) and "detail" in body:
        first = body["detail"][0] if body["detail"] else {}
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        message = f"The server refused the request: {where}: {first.get('msg')}"
    message = message or f"The team server answered {response.status_code}"
    if response.status_code == 429 and response.headers.get("Retry-After"):
        hint = f"{hint or ''} Try again in {response.headers['Retry-After']} s.".strip()
    if response.status_code in (400, 413, 422):  # 413: over a limit the server sets
        return UsageError(message, hint=hint)
    if response.status_code == 404:
        return NotFoundError(message, hint=hint)
    if response.status_code in (502, 503, 504):
        return RuntimeUnavailableError(message, hint=hint)
    refused = ServerError(message, hint=hint)
    refused.status = response.status_code
    refused.details = body if isinstance(body, dict) else None
    return refused
