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
from typing import Any

from mllib.dashboard.data.deployments import Deployments
from mllib.dashboard.data.detail import Curve, LogTail, MetricCurves
from mllib.dashboard.data.queue import QueueSource, queue_source
from mllib.dashboard.data.runs import RunFilter, RunsFeed
from mllib.dashboard.data.studies import StudyRow, TrialRow, studies, trials
from mllib.registry.metrics import metric_names, metric_series
from mllib.registry.runs import get_run
from mllib.workspace import Workspace

RECONCILE_EVERY_S = 5.0  # settle runs whose supervisor died (as every `mllib runs` command does)


class DashboardData:
    """One project's data for the dashboard, and the actions it may take on it."""

    def __init__(
        self,
        ws: Workspace,
        *,
        queue: QueueSource | None = None,
        reconcile_every_s: float | None = RECONCILE_EVERY_S,
    ) -> None:
        self.ws = ws
        self.queue = queue or queue_source(ws)
        self.deployments = Deployments(self)
        self.reconcile_every_s = reconcile_every_s  # None: never (tests of made-up running runs)
        self._reconciled = 0.0

    @classmethod
    def open(cls, start: Path | str | None = None) -> DashboardData:
        """The project at or above `start` (a usage error, as for every command, outside one)."""
        data = cls(Workspace.find(start))
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

    def close(self) -> None:
        """Let go of what the data holds open (the team server's connection)."""
        self.queue.close()

    def runs_feed(self, run_filter: RunFilter, metric: str | None, limit: int) -> RunsFeed:
        return RunsFeed(self, run_filter, metric, limit)

    def metric_choices(self, run_ids: list[str]) -> list[str]:
        """Metric names the given runs logged, in first-seen order."""
        names: dict[str, None] = {}
        for run_id in run_ids:
            names.update(dict.fromkeys(metric_names(self.ws.registry, run_id)))
        return list(names)

    def run(self, run_id: str) -> dict[str, Any]:
        """`runs show --json` of one run (params, evaluation, artifacts, environment, attempts)."""
        from mllib.runs.views import show

        return show(self.ws, run_id)

    def curves(self, run_id: str) -> MetricCurves:
        return MetricCurves(self, run_id)

    def log_tail(self, run_id: str) -> LogTail:
        run = get_run(self.ws.registry, run_id)
        return LogTail(Path(run.log_path or self.ws.run_dir(run.id) / "output.log"))

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        """`runs compare --json` of these runs."""
        from mllib.runs.views import compare

        return compare(self.ws, run_ids)

    def series(self, run_ids: list[str], metric: str) -> dict[str, tuple[list[int], list[float]]]:
        """Each run's curve of `metric` (thinned as a live curve is); runs without it left out."""
        found = {}
        for run_id in run_ids:
            curve = Curve()
            for step, value in metric_series(self.ws.registry, run_id, metric):
                curve.add(step, value)
            if curve.count:
                found[run_id] = curve.points()
        return found

    # Actions: the CLI's own functions, so the same rules and records apply.

    def cancel(self, run_id: str) -> str:
        from mllib.runs.control import cancel

        record = cancel(self.ws, run_id)
        return f"Run {record.id} {record.status}"

    def rerun(self, run_id: str) -> str:
        from mllib.runs.api import rerun

        record = rerun(run_id, detach=True, echo=None, start_dir=self.ws.project.root)
        return f"Started run {record.id} (a rerun of {run_id}) in the background"
