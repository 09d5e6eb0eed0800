"""Each HTTP response in one system call.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and its body in a second write: two sends, two trips through the TCP
stack and, often, two wake-ups of the client for one small JSON answer. Here the head is held
until the body's write (or the end of the event loop's current pass, whichever comes first), and
both go out together. Nothing else changes: flow control, keep-alive and closing are uvicorn's.
(The API servers' uvicorn protocol writes through it: OneWriteHttpToolsProtocol, in
litserve_internals.py.)
"""

from __future__ import annotations

import asyncio
from typing import Any


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
