"""A TCP proxy on loopback in front of a real server, made slow on demand: while it holds, what a
client sends waits at the proxy until the test releases it, so a test sees what a program does
while a server is slow to answer (a stand-in for a slow network or a loaded server)."""

from __future__ import annotations

import socket
import threading


class SlowProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`. `hold()`: requests wait at the proxy
    (`waiting` counts them) until `release()`, or `hold_s` at most, so a program that blocks on
    one makes its test fail rather than hang. `hold(prefix)` holds only the requests whose first
    bytes are `prefix` (b"POST /api/v1/datasets HTTP": that request line), the rest pass.
    While the upstream is down, a connection to the proxy is closed at once (as a refused one)."""

    def __init__(self, upstream: int, *, hold_s: float = 20.0) -> None:
        self.upstream = upstream
        self.hold_s = hold_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open = threading.Event()
        self.open.set()
        self.waiting = 0
        self.prefix: bytes | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self, prefix: bytes | None = None) -> None:
        self.prefix = prefix
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.release()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            except OSError:
                client.close()  # the upstream is down: the client sees its connection end
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, gated: bool) -> None:
        try:
            while data := source.recv(65536):
                held = self.prefix is None or data.startswith(self.prefix)
                if gated and held and not self.open.is_set():
                    with self._lock:
                        self.waiting += 1
                    self.open.wait(self.hold_s)
                    with self._lock:
                        self.waiting -= 1
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
