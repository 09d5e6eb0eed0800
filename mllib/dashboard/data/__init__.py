"""Everything the dashboard reads from mllib and asks it to do: the dashboard's only seam to the
library, one module per pane's data (runs, detail: one run's curves and log, queue and agents,
deployments, studies) and `DashboardData`, the whole of one project's. It calls the same public
functions as the CLI (`runs list/show/compare/logs/cancel/rerun`, `agents list/check`, `queue`,
`tune list/show`, `deploy status/history/stop/rollback`), so the same rules apply, and a library
function that moves is a change here alone. No Textual here: the benchmark and the tests drive it
directly.

>>> source = DashboardData.open()  # doctest: +SKIP
>>> feed = source.runs_feed(RunFilter(status="running"), metric="loss")  # doctest: +SKIP
>>> rows, total = feed.load()  # doctest: +SKIP
>>> feed.poll().changed  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path

from mllib.dashboard.data.deployments import Deployments
from mllib.dashboard.data.queue import QueueSource, queue_source
from mllib.dashboard.data.run_sources import RunsSource, runs_source
from mllib.dashboard.data.runs import RunFilter, RunsFeed
from mllib.dashboard.data.server import ServerLink
from mllib.dashboard.data.studies import StudyRow, TrialRow, studies, trials
from mllib.workspace import Workspace

RECONCILE_EVERY_S = 5.0  # settle runs whose supervisor died (as every `mllib runs` command does)


class DashboardData:
    """One project's data for the dashboard, and the actions it may take on it. Runs, the queue
    and agents come from the team server when one is configured (`MLLIB_SERVER`, `[server] url`,
    or the one logged in to: as `mllib runs list` and `mllib queue` choose) unless `local`, else
    from this project's registry."""

    def __init__(
        self,
        ws: Workspace,
        *,
        local: bool = False,
        queue: QueueSource | None = None,
        reconcile_every_s: float | None = RECONCILE_EVERY_S,
    ) -> None:
        from mllib.credentials import configured_server

        self.ws = ws
        url = None if local else configured_server(ws.project.config)
        server = ServerLink(ws, url) if url else None
        self.runs: RunsSource = runs_source(ws, server)
        self.queue = queue or queue_source(ws, server)
        self.deployments = Deployments(ws)
        self.reconcile_every_s = reconcile_every_s  # None: never (tests of made-up running runs)
        self._reconciled = 0.0

    @classmethod
    def open(cls, start: Path | str | None = None, *, local: bool = False) -> DashboardData:
        """The project at or above `start` (a usage error, as for every command, outside one)."""
        data = cls(Workspace.find(start), local=local)
        data.reconcile(force=True)
        return data

    @property
    def project_name(self) -> str:
        return self.ws.project.root.name

    def reconcile(self, *, force: bool = False) -> None:
        """Settle runs whose supervisor died, at most every `reconcile_every_s`."""
        every = self.reconcile_every_s
        if not force and (every is None or time.monotonic() - self._reconciled < every):
            return
        from mllib.runs.control import reconcile

        self._reconciled = time.monotonic()
        reconcile(self.ws)

    def studies(self) -> list[StudyRow]:
        """The project's tuning studies with their trials and best values (`tune list`)."""
        return studies(self.ws)

    def trials(self, study: str) -> list[TrialRow]:
        """One study's trials, each with the best value so far (`tune show`)."""
        return trials(self.ws, study)

    def runs_feed(self, run_filter: RunFilter, metric: str | None, limit: int) -> RunsFeed:
        return RunsFeed(self.runs, run_filter, metric, limit)

    def close(self) -> None:
        """Let go of what the data holds open (the team server's connection)."""
        self.runs.close()
        self.queue.close()
