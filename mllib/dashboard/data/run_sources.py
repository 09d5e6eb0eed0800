"""Where the Runs pane, a run's screen and compare read runs, and where cancel and rerun go: the
team server when one is configured (as `mllib runs list` chooses; `mllib dashboard --local`: this
project's registry), else this project's registry (`runs_source`). Both answer in the same shapes
(`mllib.runs.live` for the table, `runs show/compare --json` for a run and a comparison), so the
panes do not know which they read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from mllib.dashboard.data.detail import Curve, LogTail, MetricCurves, ServerLogTail
from mllib.dashboard.data.runs import RunFilter, WindowSource
from mllib.dashboard.data.server import ServerLink
from mllib.registry.metrics import metric_series, points_after
from mllib.registry.runs import get_run
from mllib.runs import live
from mllib.workspace import Workspace

Series = dict[str, tuple[list[int], list[float]]]  # run id -> a curve's steps and values


class LogLines(Protocol):
    def read(self) -> list[str]: ...


class RunsSource(WindowSource, Protocol):
    """Runs as the dashboard reads them (the table's window and changes, a run, a comparison),
    and the actions it may take on them."""

    name: str
    remote: bool  # True: read off the UI thread (a server may be slow, or restarting)

    def metric_choices(self, run_ids: list[str]) -> list[str]: ...

    def show(self, run_id: str) -> dict[str, Any]: ...

    def compare(self, run_ids: list[str]) -> dict[str, Any]: ...

    def series(self, run_ids: list[str], metric: str) -> Series:
        """Each run's curve of `metric` (thinned as a live curve is); runs without it left out."""
        ...

    def curves(self, run_id: str, name: str | None = None) -> MetricCurves:
        """The run's curves as points arrive (`name`: that metric's alone)."""
        ...

    def log_tail(self, run_id: str) -> LogLines: ...

    def cancel(self, run_id: str) -> str: ...

    def rerun(self, run_id: str) -> str: ...

    def close(self) -> None: ...


def thinned(points: list[tuple[int, float | None]]) -> tuple[list[int], list[float]] | None:
    """A metric's (step, value) points as a live curve draws them (thinned, finite ones); None
    when there are none."""
    curve = Curve()
    for step, value in points:
        curve.add(step, value)
    return curve.points() if curve.count else None


class LocalRuns:
    """This project's registry, read as the `mllib runs` commands read it here."""

    remote = False
    name = "this project"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def window(self, run_filter: RunFilter, metric: str | None, limit: int) -> dict[str, Any]:
        f = run_filter
        return live.window(
            self.ws.registry, status=f.status, model=f.model, user=f.user, text=f.text,
            limit=limit, metric=metric,
        )  # fmt: skip

    def changes(self, cursor: dict[str, int], metric: str | None) -> dict[str, Any]:
        return live.changes(self.ws.registry, live.cursor_of(cursor), metric=metric)

    def metric_choices(self, run_ids: list[str]) -> list[str]:
        return live.metric_choices(self.ws.registry, run_ids)

    def show(self, run_id: str) -> dict[str, Any]:
        """`runs show --json` of one run (params, evaluation, artifacts, environment, attempts)."""
        from mllib.runs.views import show

        return show(self.ws, run_id)

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        """`runs compare --json` of these runs."""
        from mllib.runs.views import compare

        return compare(self.ws, run_ids)

    def series(self, run_ids: list[str], metric: str) -> Series:
        found = {r: thinned(metric_series(self.ws.registry, r, metric)) for r in run_ids}
        return {run_id: points for run_id, points in found.items() if points is not None}

    def curves(self, run_id: str, name: str | None = None) -> MetricCurves:
        return MetricCurves(
            lambda after, limit: points_after(self.ws.registry, run_id, after, limit, name=name),
            name,
        )

    def log_tail(self, run_id: str) -> LogLines:
        run = get_run(self.ws.registry, run_id)
        return LogTail(Path(run.log_path or self.ws.run_dir(run.id) / "output.log"))

    # Actions: the CLI's own functions, so the same rules and records apply.

    def cancel(self, run_id: str) -> str:
        from mllib.runs.control import cancel

        record = cancel(self.ws, run_id)
        return f"Run {record.id} {record.status}"

    def rerun(self, run_id: str) -> str:
        from mllib.runs.api import rerun

        record = rerun(run_id, detach=True, echo=None, start_dir=self.ws.project.root)
        return f"Started run {record.id} (a rerun of {run_id}) in the background"

    def close(self) -> None:
        pass


class ServerRuns:
    """The team server's runs, read as `mllib runs list/show/compare/logs` read them there
    (`mllib.client.views`): everyone's for an admin (the user filter narrows them), yours
    otherwise. Cancel and rerun are asked of the server, as `mllib runs cancel/rerun` ask."""

    remote = True

    def __init__(self, ws: Workspace, server: ServerLink) -> None:
        self.ws = ws
        self.server = server
        self.name = f"team server {server.url}"

    def window(self, run_filter: RunFilter, metric: str | None, limit: int) -> dict[str, Any]:
        from mllib.client.views import runs_window

        f = run_filter
        return runs_window(
            self.server(), status=f.status, model=f.model, user=f.user, text=f.text,
            limit=limit, metric=metric,
        )  # fmt: skip

    def changes(self, cursor: dict[str, int], metric: str | None) -> dict[str, Any]:
        from mllib.client.views import runs_changes

        return runs_changes(self.server(), cursor, metric=metric)

    def metric_choices(self, run_ids: list[str]) -> list[str]:
        from mllib.client.views import metric_choices

        return metric_choices(self.server(), run_ids)

    def show(self, run_id: str) -> dict[str, Any]:
        from mllib.client.views import show

        return show(self.server(), run_id)

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        from mllib.client.views import compare

        return compare(self.server(), run_ids)

    def series(self, run_ids: list[str], metric: str) -> Series:
        from mllib.client.views import metric_points

        found = {}
        for run_id in run_ids:
            points, after = [], 0
            while batch := metric_points(self.server(), run_id, after, name=metric):
                points += [(step, value) for _, _, step, value in batch]
                after = batch[-1][0]
            if curve := thinned(points):
                found[run_id] = curve
        return found

    def curves(self, run_id: str, name: str | None = None) -> MetricCurves:
        from mllib.client.views import metric_points

        return MetricCurves(
            lambda after, _: metric_points(self.server(), run_id, after, name=name), name
        )

    def log_tail(self, run_id: str) -> LogLines:
        from mllib.client.views import read_log

        return ServerLogTail(lambda **at: read_log(self.server(), run_id, **at))

    def cancel(self, run_id: str) -> str:
        from mllib.client.views import cancel

        data = cancel(self.server(), run_id)
        return f"Run {data['id']} {data['status']}"

    def rerun(self, run_id: str) -> str:
        from mllib.client.views import rerun

        answer = rerun(self.server(), run_id, self.ws.project.env_values("remote"))
        return f"Queued run {answer['id']} (a rerun of {run_id}) on {self.server.url}"

    def close(self) -> None:
        self.server.close()


def runs_source(ws: Workspace, server: ServerLink | None) -> RunsSource:
    """The team server's runs when one is configured, else this project's."""
    return ServerRuns(ws, server) if server else LocalRuns(ws)
