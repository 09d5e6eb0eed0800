"""Telling the team server what went live here, or was stopped, since it last could
(mllib.server.deployments: what its `NAME@prod` follows). Both sides send: each `mllib deploy`
command, and a deployment's controller when it finishes a promotion on its own. The record stays
in the registry until the server has it (`reported_at`), so an unreachable server only delays it:
whoever sends next sends it, and sending it twice changes nothing there.

>>> send_pending(reg, "https://mllib.example.com", timeout=5.0).sent  # doctest: +SKIP
[Change(deployment=Deployment(id='d3k9...', ...), stopped=False)]
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.errors import MllibError
from mllib.serving.control import records

if TYPE_CHECKING:
    from mllib.registry.db import Registry

TIMEOUT_S = 5.0  # a server that does not answer delays a command this long at most
RETRY_S = 30.0  # a controller tries again this long after the server could not be reached

log = logging.getLogger("mllib.serving.controller")


@dataclass
class Report:
    """What one sending did: the changes the server recorded, the newest deployment of each
    model and environment whose version the server does not hold (its schedules of NAME@ENV
    cannot evaluate it), and, when it stopped early, why and the first change left."""

    sent: list[records.Change] = field(default_factory=list)
    unheld: dict[tuple[str, str], records.Deployment] = field(default_factory=dict)
    error: str | None = None
    left: records.Change | None = None


def send_pending(reg: Registry, url: str, *, timeout: float = TIMEOUT_S) -> Report:
    """Send the server at `url` (with this user's token) each change it was not told of, oldest
    first; stops at the first that fails, which stays pending."""
    from mllib.client.deployments import record
    from mllib.client.http import Server

    report = Report()
    pending = records.unreported(reg)
    if not pending:
        return report
    try:
        server = Server.connect(url=url, timeout=timeout)
        try:
            for change in pending:
                report.left = change
                answer = record(server, body(change))
                records.reported(reg, change)
                report.sent.append(change)
                key = (change.deployment.model, change.deployment.env)
                report.unheld.pop(key, None)
                if not answer["known"]:
                    report.unheld[key] = change.deployment
            report.left = None
        finally:
            server.close()
    except MllibError as exc:
        report.error = exc.message
    return report


def body(change: records.Change) -> dict[str, Any]:
    """The change as `POST /api/v1/deployments` takes it."""
    dep = change.deployment
    return {
        "id": change.id,
        "model": dep.model,
        "version": dep.version,
        "run_id": dep.run_id,
        "env": dep.env,
        "action": change.action,
        "deployed_at": change.at,
        "model_sha256": dep.model_sha256,
        "code_hash": dep.code_hash,
    }


class Reporter:
    """A controller's sending (`url` None: no team server was configured when it was deployed):
    `due()` after a change it made, then each `tick` sends in a thread of its own when one is
    due, so a slow or unreachable server never holds the controller up; one that could not be
    reached is tried again RETRY_S later (and the next `mllib deploy` command sends it too)."""

    def __init__(self, registry_path: str, url: str | None) -> None:
        self.registry_path = registry_path
        self.url = url
        self._due = False
        self._next_at = 0.0
        self._thread: threading.Thread | None = None

    def due(self) -> None:
        self._due = self.url is not None
        self._next_at = 0.0

    def tick(self, now: float) -> None:
        if not self._due or now < self._next_at:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._due, self._next_at = False, now + RETRY_S
        self._thread = threading.Thread(target=self._send, name="report", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for a sending under way to end (at most `timeout` seconds)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _send(self) -> None:
        from mllib.registry.db import Registry

        assert self.url is not None
        try:
            reg = Registry.open(Path(self.registry_path))
            try:
                report = send_pending(reg, self.url)
            finally:
                reg.close()
        except Exception as exc:  # never the controller's problem: tried again later
            report = Report(error=str(exc))
        if report.error is not None:
            self._due = True  # _next_at: RETRY_S from when it began
            log.warning(
                f"not recorded on the team server yet ({report.error}); trying again in "
                f"{RETRY_S:g}s",
                extra={"event": "report_failed"},
            )
        for change in report.sent:
            log.info(
                f"recorded on the team server: {change.action} of "
                f"{change.deployment.label} on {change.deployment.env}",
                extra={"event": "reported"},
            )
