"""The team server connection the dashboard's sources share (the queue and agents, the runs):
made on first use, with this user's login (`mllib.client.http.Server.connect`), closed once."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.client.http import Server


class ServerLink:
    """One team server, connected when first asked, from any thread (httpx's client is safe to
    share between threads)."""

    def __init__(self, ws: Workspace, url: str) -> None:
        self.ws = ws
        self.url = url
        self._server: Server | None = None
        self._lock = threading.Lock()  # two panes' first reads connect once

    def __call__(self) -> Server:
        from mllib.client.http import Server

        with self._lock:
            if self._server is None:
                self._server = Server.connect(self.ws.project.config, url=self.url)
            return self._server

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None
