"""A stand-in for Sentry's ingest endpoint on loopback: Sentry's cloud cannot be reached from
tests, so the real sentry-sdk transport posts its envelopes here, and tests read what arrived.

An envelope (develop.sentry.dev/sdk/envelopes/) is a header line of JSON, then items, each a
header line of JSON and a payload (`length` bytes when its header says so, else one line).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROJECT_ID = 42
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


def decode_body(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """(the envelope's header, [(item header, payload)])."""
    header_line, _, rest = data.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if "length" in item:
            payload, rest = rest[: item["length"]], rest[item["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item, payload))
    return json.loads(header_line), items


class SentryIngest:
    """Records every envelope posted to /api/PROJECT_ID/envelope/; `events()` are its error events."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]] = []
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.rstrip("/") != f"/api/{PROJECT_ID}/envelope":
                    self.send_response(404)
                    self.end_headers()
                    return
                data = decode_body(body, self.headers.get("Content-Encoding"))
                with ingest._lock:
                    ingest.envelopes.append(parse_envelope(data))
                    ingest.auth_headers.append(self.headers.get("X-Sentry-Auth", ""))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.server.server_port}/{PROJECT_ID}"

    def events(self) -> list[dict[str, Any]]:
        """The error events received so far, oldest first."""
        with self._lock:
            envelopes = list(self.envelopes)
        return [
            json.loads(payload)
            for _, items in envelopes
            for item, payload in items
            if item.get("type") == "event"
        ]

    def wait_events(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} Sentry event(s) expected, got {self.events()}")

    def raw(self) -> str:
        """Everything received, as text (to check that nothing holds a secret)."""
        with self._lock:
            return "\n".join(
                json.dumps(header) + "".join(p.decode(errors="replace") for _, p in items)
                for header, items in self.envelopes
            )

    def __enter__(self) -> SentryIngest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    """The event's outermost exception: {"type", "value", "stacktrace"...}."""
    return event["exception"]["values"][-1]
