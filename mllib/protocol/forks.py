"""The fork server's messages: one JSON object a message on a Unix SEQPACKET socket, written
and read in one place (mllib.runtime.forkserver asks, mllib.worker.forkserver answers).

The driver sends `{"args", "cwd", "env"}` with two file descriptors: the pipe the worker's stdout
and stderr go to, and a socket of the run's own, on which the fork server answers `{"pid"}`
once it has forked the worker and `{"code"}` (as `os.waitstatus_to_exitcode`) once it has ended.
The fork server says `{"ready": true}` on its control socket once it has imported its modules.
"""

from __future__ import annotations

import json
import select
import socket
from typing import Any

MAX_MESSAGE = 1 << 20  # a request carries the run's environment
SERVER_MODULE = "mllib.worker.forkserver"


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one message (with `fds`, passed as SCM_RIGHTS)."""
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket, timeout: float | None) -> dict[str, Any] | None:
    """One message; None when none came within `timeout`, {} when the other side has closed."""
    if sock.fileno() < 0:
        return {}
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return None
    try:
        data = sock.recv(MAX_MESSAGE)
    except OSError:
        return {}
    return json.loads(data) if data else {}


def receive_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The fork server's side: one request and its descriptors; None when the driver is gone."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
    if not data:
        return None
    return json.loads(data), list(fds)
