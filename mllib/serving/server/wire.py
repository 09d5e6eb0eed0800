"""The HTTP bytes of mllib's API servers: each response in one system call, and /predict
answered on the connection itself.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and its body in a second write: two sends, two trips through the TCP
stack and, often, two wake-ups of the client for one small JSON answer. HeldHeadTransport holds
the head until the body's write (or the end of the event loop's current pass, whichever comes
first), and both go out together.

An Exchange is one request to /predict taken straight off the HTTP parser: no ASGI scope,
receive/send messages, asyncio task or event per request (about half of an API server's time
on a small model was that plumbing). It collects the body up to the size limit, hands the
request to the gateway once the body is complete, and writes the answer in one write. The rest
(parsing, keep-alive, pipelining order, flow control, closing) stays uvicorn's: the API
servers' protocol, OneWriteHttpToolsProtocol in litserve_internals.py, treats an Exchange as
one of its request cycles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, NamedTuple

log = logging.getLogger("mllib.serving")
Headers = Sequence[tuple[bytes, bytes]]


class HeldHeadTransport:
    """A transport that holds one write until the next write or the loop's next pass."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = data
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        self._transport.write(held + data)

    def write_whole(self, data: bytes) -> None:
        """Write a whole response now (after anything held)."""
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Answering(NamedTuple):
    """What an API server answers as Exchanges: requests to `paths` (the path without its
    query), with bodies of at most `limit` bytes, given to `handle` once read."""

    paths: frozenset[bytes]
    limit: int
    handle: Callable[[Exchange], None]


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
JSON_HEAD = b"content-type: application/json\r\n"


class _Unwaited:
    """uvicorn's protocol sets its cycle's `message_event` when the connection is lost;
    nothing waits on an Exchange's."""

    def set(self) -> None:
        pass


class Exchange:
    """One request and its response on a connection, answered without ASGI.

    uvicorn's protocol reads its `keep_alive`, `response_complete` and `disconnected` (and sets
    the latter two), as it does for its own request cycles. `start()` when it is the
    connection's turn (a pipelined request waits for the ones before it); the gateway's
    `handle` runs once it started and its body is read, or passed the limit (then `body` is None;
    the rest of the body is read and dropped, and the connection goes on); `respond()`
    writes the answer and lets the connection go on to its next request.
    """

    __slots__ = (
        "_chunks",
        "_on_response",
        "_size",
        "_transport",
        "complete",
        "default_headers",
        "disconnected",
        "handle",
        "headers",
        "keep_alive",
        "limit",
        "method",
        "path",
        "ran",
        "response_complete",
        "started",
    )
    message_event = _Unwaited()

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[bytes, bytes],
        keep_alive: bool,
        answering: Answering,
        transport: HeldHeadTransport,
        default_headers: Headers,
        on_response: Callable[[], None],
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.keep_alive = keep_alive
        self.limit = answering.limit
        self.handle = answering.handle
        self._transport = transport
        self.default_headers = default_headers
        self._on_response = on_response
        self._chunks: list[bytes] | None = []
        self._size = 0
        self.complete = False  # the whole body was read (or too much of it)
        self.started = False
        self.ran = False
        self.response_complete = False
        self.disconnected = False

    @property
    def body(self) -> bytes | None:
        """The request body; None when it was larger than the limit."""
        chunks = self._chunks
        if chunks is None:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def received(self, chunk: bytes) -> None:
        """A part of the body, from the parser."""
        if self._chunks is None or self.response_complete:
            return
        self._size += len(chunk)
        if self._size <= self.limit:
            self._chunks.append(chunk)
            return
        self._chunks = None  # too large: answered now; the rest is read and dropped
        self.ended()

    def ended(self) -> None:
        """The body is read (from the parser)."""
        self.complete = True
        if self.started:
            self._run()

    def start(self, *, later: bool = False) -> None:
        """It is this request's turn on its connection (`later`: at the loop's next pass, for a
        pipelined request started as the one before it is answered)."""
        self.started = True
        if self.complete:
            if later:
                asyncio.get_running_loop().call_soon(self._run)
            else:
                self._run()

    def _run(self) -> None:
        if self.ran:
            return
        self.ran = True
        try:
            self.handle(self)
        except Exception:
            log.exception(f"{self.method} {self.path} failed in the server itself")
            self.keep_alive = False
            self.respond(500, b'{"error": "Internal server error."}', ())

    def respond(self, status: int, body: bytes, headers: Headers) -> None:
        """Write the answer (a JSON body) in one write; then the connection goes on (or closes,
        without keep-alive). Once only; nothing is written to a client that went away."""
        if self.response_complete:
            return
        self.response_complete = True
        transport = self._transport
        if not self.disconnected and not transport.is_closing():
            head = [STATUS_LINES[status]]
            for name, value in self.default_headers:
                head += (name, b": ", value, b"\r\n")
            head.append(JSON_HEAD)
            for name, value in headers:
                head += (name, b": ", value, b"\r\n")
            head.append(b"content-length: %d\r\n" % len(body))
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            if self.method != "HEAD":
                head.append(body)
            transport.write_whole(b"".join(head))
            if not self.keep_alive:
                transport.close()
        self._on_response()
