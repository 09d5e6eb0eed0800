"""One run: its params, evaluation, environment, artifacts and attempts beside its metric curves
(drawn as points arrive), over a live tail of its log."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Log, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.data.detail import MetricCurves
from mllib.dashboard.plot import Chart, Series
from mllib.dashboard.screen import LiveScreen
from mllib.dashboard.text import clean, fmt_duration, fmt_time, safe, status
from mllib.runs.views import environment_lines

NAMES_EVERY_S = 2.0  # how often the metric names of a run that logged none yet are read


@dataclass
class Fetched:
    """What one refresh read of a run: its record when it changed, its metric names when read,
    the shown metric's curve and whether new points came to it, and new log lines."""

    info: dict | None
    names: list[str] | None
    curves: MetricCurves | None
    points: bool
    lines: list[str]


class RunScreen(LiveScreen):
    """The run `run_id`, refreshed by the app's poll."""

    DEFAULT_CSS = """
    RunScreen #title { height: 1; padding: 0 1; background: $panel; }
    RunScreen #top { height: 3fr; }
    RunScreen #info { width: 2fr; min-width: 30; padding: 0 1; }
    RunScreen #chart { width: 3fr; padding: 0 1; }
    RunScreen #log { height: 2fr; border-top: solid $primary-background; }
    """
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("n", "next_metric", "Next metric"),
        Binding("f", "follow", "Follow log"),
        Binding("x", "cancel_run", "Cancel run"),
        Binding("R", "rerun", "Rerun"),
        Binding("y", "copy_id", "Copy id"),
    ]

    def __init__(self, data: DashboardData, run_id: str, *, clock=time.time) -> None:
        super().__init__(data)
        self.run_id = run_id
        self.clock = clock
        self.info: dict = {}
        self.names: list[str] = []  # the metrics the run logged, in first-seen order
        self.names_at = 0.0
        self.metric: str | None = None  # the one shown, whose points alone are read
        self.curves: MetricCurves | None = None  # its curve
        self.tail = data.runs.log_tail(run_id)
        self.follow = True

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with Horizontal(id="top"):
            with VerticalScroll(id="info"):
                yield Static(id="info-text")
            yield Chart(id="chart")
        yield Log(id="log", max_lines=2000, auto_scroll=True)
        yield Footer()

    def read(self, records: set[str], metrics: set[str], due: bool) -> Fetched:
        """New points of the metric shown (no other's are read), new log lines, and the record
        again when it changed (off the UI thread for a team server); `show` draws them."""
        runs = self.data.runs
        info = runs.show(self.run_id) if due or self.run_id in records else None
        names = None  # read on opening and on `n`; until the run logs any, every few seconds
        if due or (not self.names and time.monotonic() - self.names_at > NAMES_EVERY_S):
            self.names_at = time.monotonic()
            names = runs.metric_choices([self.run_id])
        metric = self.metric or (names[0] if names else None)
        curves = self.curves
        if metric is not None and (curves is None or curves.name != metric):
            curves = runs.curves(self.run_id, metric)  # another metric's: read from its start
        points = curves.update() if curves is not None else False
        return Fetched(info, names, curves, points, self.tail.read())

    def show_loading(self) -> None:
        if not self.info:
            self.query_one("#title", Static).update(
                Text(f"Run {self.run_id}  loading from the team server…", style="bold")
            )
        self.query_one(Chart).show(
            [], clean(f"loading {self.metric}…" if self.metric else "loading…")
        )

    def show(self, fetched: Fetched) -> None:
        if fetched.info is not None:  # it changed: status, phase, evaluation, artifacts
            self.info = fetched.info
            self.query_one("#title", Static).update(self._title())
            self.query_one("#info-text", Static).update(self._details())
        elif self.info.get("status") in ("queued", "running"):
            self.query_one("#title", Static).update(self._title())  # the duration ticks
        if fetched.names is not None:
            self.names = fetched.names
        curves = fetched.curves
        if curves is not None and curves is not self.curves and self.metric in (None, curves.name):
            self.metric, self.curves = curves.name, curves  # not when `n` chose another meanwhile
            self._draw()
        elif (curves is self.curves and fetched.points) or fetched.names is not None:
            self._draw()
        if fetched.lines:
            self.query_one(Log).write_lines([clean(line) for line in fetched.lines])

    def _draw(self) -> None:
        chart = self.query_one(Chart)
        if self.curves is not None and self.curves.name != self.metric:
            return  # the chosen metric's points are on their way (`n`)
        curve = self.curves.curves.get(self.metric or "") if self.curves else None
        if curve is None:
            chart.show([], "no metrics logged yet")
            return
        steps, values = curve.points()
        last = curve.last[1] if curve.last else None
        names = self.names if self.metric in self.names else [*self.names, self.metric]
        title = f"{self.metric} = {safe(last).plain}  ({names.index(self.metric) + 1}/{len(names)}, n: next)"
        chart.show([Series(self.metric or "", steps, values)], title)

    def _title(self) -> Text:
        i = self.info
        duration = i.get("duration_s")
        if i.get("status") in ("queued", "running") and i.get("started_at"):
            from datetime import datetime

            start = datetime.fromisoformat(i["started_at"].replace("Z", "+00:00")).timestamp()
            duration = self.clock() - start
        text = Text()
        text.append(f"Run {i['id']}  ", style="bold")
        text.append_text(status(i["status"], i.get("failure_class")))
        text.append("  ")
        text.append_text(safe(f"{i['model']} · {i['action']} · {i['runtime'] or '-'}"))
        text.append(f" · {fmt_duration(duration)}")
        return text

    def _details(self) -> Text:
        i = self.info
        out = Text()

        def section(name: str) -> None:
            out.append(f"{name}\n", style="bold underline")

        def pair(key: str, value) -> None:
            out.append(f"  {key}: ", style="dim")
            out.append_text(safe(value))
            out.append("\n")

        if i.get("error"):
            out.append("error: ", style="bold red")
            out.append_text(safe(i["error"]))
            out.append("\n")
        section("Params")
        for k, v in i["params"].items():
            pair(k, v)
        if not i["params"]:
            out.append("  none\n", style="dim")
        evaluation = i.get("evaluation")  # a training run's latest, maybe from a later run
        metrics = evaluation["eval_metrics"] if evaluation else i["eval_metrics"]
        if metrics:
            section("Evaluation")
            for k, v in metrics.items():
                pair(k, v)
            if evaluation and evaluation["run_id"] != i["id"]:
                count = i.get("evaluations") or 1
                pair("by", evaluation["run_id"] + (f" (latest of {count})" if count > 1 else ""))
        section("Environment")
        model = i["model_file"] or i["model"]
        if i.get("model_version"):
            model = f"{model} (version {i['model_version']})"
        for key, value in (
            ("model", model),
            ("runtime", i["runtime"]),
            ("where", i.get("runtime_note")),
            ("host", i.get("host")),
            ("user", i.get("user")),
            ("seed", i.get("seed")),
            ("code", (i.get("code_hash") or "")[:16] or None),
            ("created", fmt_time(i["created_at"])),
            ("rerun of", i.get("rerun_of")),
            ("evaluated", i.get("source_run_id")),
        ):
            if value is not None:
                pair(key, value)
        for d in i.get("datasets") or []:
            pair(d["env"], f"{d['name']}@{d['version']}")
        for key, value in environment_lines(i.get("environment"), i.get("submitted_python")):
            pair(key, value)
        if i["artifacts"]:
            section("Artifacts")
            for a in i["artifacts"]:
                pair(a["path"], f"{a['kind']}, {a['size']:,} B")
        if i["attempts"]:
            section("Attempts")
            for a in i["attempts"]:
                why = f": {a['reason']}" if a["reason"] else ""
                pair(str(a["attempt"]), f"{a['agent']} {a['status']}{why}")
        return out

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_metric(self) -> None:
        names = self.names
        if not names:
            return
        index = names.index(self.metric) + 1 if self.metric in names else 0
        self.metric = names[index % len(names)]
        self.ask()  # its points alone, read from its start

    def action_follow(self) -> None:
        log = self.query_one(Log)
        self.follow = not self.follow
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self.notify("Following the log" if self.follow else "Stopped following the log")

    def action_cancel_run(self) -> None:
        self.app.cancel_run(self.run_id)

    def action_rerun(self) -> None:
        self.app.rerun(self.run_id)

    def action_copy_id(self) -> None:
        self.app.copy_run_id(self.run_id)
