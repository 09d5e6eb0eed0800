"""The link between a deployment's front and its replicas: requests and answers as length-prefixed
frames over one long-lived connection per replica process (a unix socket in the abstract
namespace here, TCP to a replica on an agent host), many requests in flight on it at once.

A second HTTP request per prediction would cost the front and the replica each a full HTTP parse
and encode; a frame costs a struct header. A connection starts with the replica's token (compared
in constant time) so nothing else on the host or the network can use a replica's link.

Frames (little-endian): request `I body length, I sequence, H id length` + request id + body;
answer `I body length, I sequence, H HTTP status` + body.

Addresses: mllib.serving.routes.parse_address.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import struct
from collections.abc import Callable

from mllib.serving.routes import parse_address, process_address

__all__ = ["LinkBroken", "LinkClient", "listen", "process_address", "serve"]

HELLO = b"MLNK"
_REQUEST = struct.Struct("<IIH")
_ANSWER = struct.Struct("<IIH")
HEADER = _REQUEST.size
MAX_FRAME = 1 << 31

Answer = tuple[int, bytes]  # HTTP status and JSON body
# A replica's handler: the requests of one read (request id, body), and where their answers go,
# in order, on the event loop.
Handler = Callable[[list[tuple[str, bytes]], Callable[[list[Answer]], None]], None]


class LinkBroken(Exception):
    """The replica could not be reached, or the connection broke before it answered."""


def listen(address: str) -> socket.socket:
    """A listening socket for `address` (the replica side)."""
    kind, where = parse_address(address)
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in where[0] else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


# -- the replica's side --------------------------------------------------------------------------


class _Writer:
    """Frames written during one pass of the event loop leave in one write (one system call,
    one wake-up of the other side, which then reads them together)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.pending: list[bytes] | None = None

    def send(self, frame: bytes) -> None:
        if self.pending is None:
            self.pending = [frame]
            self.loop.call_soon(self.flush)
        else:
            self.pending.append(frame)

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending and not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, token: bytes, handler: Handler) -> None:
        self.token = token
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.greeted = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.writer = _Writer(self.transport, self.loop)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.greeted:
            need = len(HELLO) + 2
            if len(buffer) < need:
                return
            size = int.from_bytes(buffer[4:6], "little")
            if len(buffer) < need + size:
                return
            given = bytes(buffer[need : need + size])
            if buffer[:4] != HELLO or not hmac.compare_digest(given, self.token):
                self.transport.close()
                return
            del buffer[: need + size]
            self.greeted = True
        at, end = 0, len(buffer)
        seqs, items = [], []
        while end - at >= HEADER:
            size, seq, id_size = _REQUEST.unpack_from(buffer, at)
            stop = at + HEADER + id_size + size
            if stop > end:
                break
            request_id = buffer[at + HEADER : at + HEADER + id_size].decode("latin-1")
            items.append((request_id, bytes(buffer[at + HEADER + id_size : stop])))
            seqs.append(seq)
            at = stop
        if at:
            del buffer[:at]
        if items:
            self.handler(items, lambda answers: self._answer(seqs, answers))

    def _answer(self, seqs: list[int], answers: list[Answer]) -> None:
        if self.transport.is_closing():
            return
        send = self.writer.send
        for seq, (status, payload) in zip(seqs, answers, strict=True):
            send(_ANSWER.pack(len(payload), seq, status) + payload)


async def serve(sock: socket.socket, token: str, handler: Handler) -> asyncio.AbstractServer:
    """Answer link frames arriving on `sock` with `handler` (all of one read at once)."""
    loop = asyncio.get_running_loop()
    secret = token.encode()

    def factory() -> _ServerProtocol:
        return _ServerProtocol(secret, handler)

    if sock.family == socket.AF_UNIX:
        return await loop.create_unix_server(factory, sock=sock)
    return await loop.create_server(factory, sock=sock)


# -- the front's side ----------------------------------------------------------------------------


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: dict[int, asyncio.Future] = {}
        self.buffer = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.writer = _Writer(self.transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        at, end = 0, len(view)
        while end - at >= HEADER:
            size, seq, status = _ANSWER.unpack_from(view, at)
            stop = at + HEADER + size
            if stop > end:
                break
            future = self.waiting.pop(seq, None)
            if future is not None and not future.done():
                future.set_result((status, bytes(view[at + HEADER : stop])))
            at = stop
        if view is buffer:
            del buffer[:at]
        elif at < end:
            buffer += data[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(LinkBroken(f"the replica closed the link ({exc or 'EOF'})"))


class LinkClient:
    """The front's connection to one replica process: opened on first use, opened again after it
    breaks; `ask` sends one request and waits for its answer."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token
        self._protocol: _ClientProtocol | None = None
        self._connecting: asyncio.Future | None = None
        self._seq = 0

    @property
    def in_flight(self) -> int:
        return len(self._protocol.waiting) if self._protocol else 0

    async def _connect(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        kind, where = parse_address(self.address)
        try:
            if kind == "unix":  # connected here: uvloop cannot name an abstract address itself
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(1.0)
                try:
                    sock.connect(where)  # a local listener answers at once, or refuses
                except OSError:
                    sock.close()
                    raise
                sock.setblocking(False)
                transport, protocol = await loop.create_unix_connection(_ClientProtocol, sock=sock)
            else:
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(_ClientProtocol, *where), timeout=5.0
                )
        except (OSError, TimeoutError) as exc:
            raise LinkBroken(f"cannot reach replica at {self.address}: {exc}") from None
        token = self.token.encode()
        transport.write(HELLO + len(token).to_bytes(2, "little") + token)
        return protocol

    async def _ready(self) -> _ClientProtocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            protocol = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        self._protocol = protocol
        return protocol

    async def ask(self, request_id: str, body: bytes, timeout_s: float) -> Answer | None:
        """The replica's answer; None when none came within `timeout_s`; LinkBroken when the
        replica could not be reached or the link broke first."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._ready()
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        rid = request_id.encode("latin-1")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        protocol.waiting[seq] = future
        protocol.writer.send(_REQUEST.pack(len(body), seq, len(rid)) + rid + body)
        timer = loop.call_later(timeout_s, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()
            protocol.waiting.pop(seq, None)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
