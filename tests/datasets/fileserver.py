"""A real HTTP/1.1 server on loopback serving in-memory files, with switches for the ways servers
and networks fail: no Range support, no Content-Length, errors, dropped or stalled connections.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PIECE = 64 * 1024


@dataclass
class Behaviour:
    ranges: bool = True  # honour Range requests (else always 200 with the whole body)
    content_length: bool = True  # else a close-delimited body of unknown length
    etag: bool = True
    fail_with: list[int] = field(default_factory=list)  # statuses to answer next, one per request
    drop_after: int | None = None  # close the connection after sending this many body bytes, once
    stall_after: int | None = None  # stop sending after this many body bytes until `release` is set
    release: threading.Event = field(default_factory=threading.Event)
    hang: bool = False  # accept, then send nothing until `release` is set


class FileServer:
    """`with FileServer() as server: server.files["/a.bin"] = data; server.url("/a.bin")`."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour = Behaviour()
        self.requests: list[dict[str, str | None]] = []
        self.sent = 0  # body bytes sent, over all requests
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.behaviour.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                b = server.behaviour
                server.requests.append(
                    {
                        "path": self.path,
                        "range": self.headers.get("Range"),
                        "if_range": self.headers.get("If-Range"),
                    }
                )
                if b.hang:
                    b.release.wait(30)
                    return
                if b.fail_with:
                    self._send_status(b.fail_with.pop(0))
                    return
                data = server.files.get(urlsplit(self.path).path)
                if data is None:
                    self._send_status(404)
                    return
                etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
                start, status = 0, 200
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if b.ranges and wanted and (if_range is None or if_range == etag):
                    match = re.fullmatch(r"bytes=(\d+)-", wanted)
                    start = int(match[1]) if match else 0
                    if start >= len(data):
                        self._send_status(416)
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                if b.content_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                if b.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if b.etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                self._send_body(body)

            def _send_body(self, body: bytes) -> None:
                b = server.behaviour
                sent = 0
                try:
                    while sent < len(body):
                        limit = len(body)
                        if b.drop_after is not None:
                            limit = min(limit, b.drop_after)
                        if b.stall_after is not None:
                            limit = min(limit, b.stall_after)
                        if sent >= limit:
                            if b.drop_after is not None and sent >= b.drop_after:
                                b.drop_after = None  # once
                                self.close_connection = True
                                return
                            b.release.wait(30)
                            b.stall_after = None
                            continue
                        piece = body[sent : min(sent + PIECE, limit)]
                        self.wfile.write(piece)
                        sent += len(piece)
                        server.sent += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send_status(self, code: int) -> None:
                message = f"status {code}\n".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

        return Handler
