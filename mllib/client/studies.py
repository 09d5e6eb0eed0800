"""A tuning study's Optuna journal kept on the team server (mllib.server.studies), read and
appended over HTTP: what `mllib tune --remote` uses instead of a journal file when a team
server is configured.

`ServerJournal` has the two methods of Optuna's `BaseJournalBackend` (`read_logs`,
`append_logs`); mllib.tuning.storage, which owns Optuna, puts it behind a JournalStorage.
An append carries a key of its own, so retrying it after a dropped connection (mllib.client.http
retries) never appends it twice.

>>> journal = ServerJournal("http://server:8750", "lr-search")  # doctest: +SKIP
>>> journal.append_logs([{"op_code": 0, "worker_id": "w", "study_name": "lr-search"}])  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any
from urllib.parse import quote

from mllib.client.http import Server, ServerError

PAGE = 10_000  # the most entries the server sends in one answer (mllib.server.studies.MAX_READ)


class ServerJournal:
    """Study `study`'s journal on the server at `url`, as the logged-in user's."""

    def __init__(self, url: str, study: str) -> None:
        self.server = Server.connect(url=url)
        # Optuna's storages have no close(): the connection goes when the journal does.
        self._closer = weakref.finalize(self, self.server.close)
        self.path = f"/api/v1/studies/{quote(study, safe='')}/journal"
        self.read_count = 0  # entries read so far: what an `expect` append is conditioned on

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        """The entries from number `log_number_from` on, in the order the server appended them."""
        entries: list[dict[str, Any]] = []
        while True:
            page = self.server.get(self.path, params={"after": log_number_from + len(entries)})
            entries += page["entries"]
            if len(page["entries"]) < PAGE:
                self.read_count = max(self.read_count, log_number_from + len(entries))
                return entries

    def append_logs(self, logs: list[dict[str, Any]], *, expect: int | None = None) -> bool:
        """Append `logs` after the journal's last entry (whoever else is appending); with
        `expect`, only if it holds that many entries: False when it held more (nothing was
        appended; read it again and decide again)."""
        body: dict[str, Any] = {"entries": logs, "batch": uuid.uuid4().hex}
        if expect is not None:
            body["expect"] = expect
        try:
            self.server.request("POST", self.path, json=body)
        except ServerError as exc:
            if expect is not None and exc.status == 409:
                return False
            raise
        return True

    def close(self) -> None:
        self._closer()


def list_server_studies(url: str) -> list[dict[str, Any]]:
    """The user's studies kept on the server at `url`: name, entries, created_at, updated_at."""
    server = Server.connect(url=url)
    try:
        # asked once: `mllib tune list` does not wait for a server that is down
        return list(server.request("GET", "/api/v1/studies", retry=False).json())
    finally:
        server.close()
