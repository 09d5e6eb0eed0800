"""The dashboard app: the Runs, Queue and agents, Deployments and Tuning panes in tabs, the run and compare
screens over them, one refresh loop, and the actions every pane shares (each confirmed first when
it stops or starts work, and each carried out by the library in the background)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane

from mllib.dashboard.compare import CompareScreen
from mllib.dashboard.data import DashboardData
from mllib.dashboard.data.runs import RunFilter, RunsDelta
from mllib.dashboard.deployments import DeploymentsPane
from mllib.dashboard.detail import RunScreen
from mllib.dashboard.dialogs import Confirm
from mllib.dashboard.queue import QueuePane
from mllib.dashboard.runs import RunsPane
from mllib.dashboard.screen import LiveScreen
from mllib.dashboard.tuning import TuningPane
from mllib.errors import MllibError

REFRESH_S = 0.25
# The panes, as (tab id, title).
PANES = (
    ("runs", "Runs"),
    ("queue", "Queue & agents"),
    ("deployments", "Deployments"),
    ("tuning", "Tuning"),
)


class DashboardApp(App):
    """`mllib dashboard`: live runs, the queue and agents, deployments and tuning studies of one
    project."""

    TITLE = "mllib dashboard"
    CSS = """
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("1", "pane('runs')", "Runs", show=False),
        Binding("2", "pane('queue')", "Queue", show=False),
        Binding("3", "pane('deployments')", "Deployments", show=False),
        Binding("4", "pane('tuning')", "Tuning", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(
        self,
        data: DashboardData,
        *,
        metric: str | None = None,
        run_filter: RunFilter | None = None,
        limit: int = 1000,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.data = data
        self.refresh_s = refresh_s
        self.clock = clock
        self.runs = RunsPane(data, metric=metric, run_filter=run_filter, limit=limit, clock=clock)
        self.sub_title = data.project_name
        self.timer = None
        self.reading = False  # a refresh is reading the team server

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        with TabbedContent(initial="runs"):
            with TabPane("Runs (1)", id="runs"):
                yield self.runs
            with TabPane("Queue & agents (2)", id="queue"):
                yield QueuePane(self.data, clock=self.clock)
            with TabPane("Deployments (3)", id="deployments"):
                yield DeploymentsPane(self.data)
            with TabPane("Tuning (4)", id="tuning"):
                yield TuningPane(self.data)
        yield Footer()

    def on_mount(self) -> None:
        self.timer = self.set_interval(self.refresh_s, self.refresh_data)

    def on_unmount(self) -> None:
        # Not waiting for a read under way: quitting while a slow server answers is immediate
        # (the read ends on its own, its answer unused).
        self.data.close()

    # -- refreshing

    def refresh_data(self) -> None:
        """One refresh: the runs' deltas and the open run or comparison (read in the background
        from a team server, one read at a time), then whatever pane is on screen."""
        self.data.reconcile()
        screen = self.screen
        live = screen if isinstance(screen, LiveScreen) else None
        if not self.data.runs.remote:
            self._show(screen, self._read(live, live.take_due() if live else False))
        elif not self.reading:
            self.reading = True
            due = live.take_due() if live else False

            def done(got: Any) -> None:
                self.reading = False
                if got is None:  # it failed: the next refresh reads the screen's all again
                    if live is not None:
                        live.due = live.due or due
                    return
                self._show(screen, got)
                if isinstance(self.screen, LiveScreen) and self.screen.due:
                    self.refresh_data()  # opened, or asked for, while this read was under way

            work = lambda: self._read(live, due)  # noqa: E731
            self.background(work, "Refresh", done=done, always=True, quiet=True)
        if live is not None:
            return
        if self.active_pane == "queue":
            self.query_one(QueuePane).refresh_data()
        elif self.active_pane == "deployments":
            self.query_one(DeploymentsPane).refresh_data()
        elif self.active_pane == "tuning":
            self.query_one(TuningPane).refresh_data()

    def _read(self, live: LiveScreen | None, due: bool) -> tuple[Any, RunsDelta, Any]:
        """What changed: the runs table's delta, and what the open run or comparison needs of it
        (all of it when `due`)."""
        feed, delta = self.runs.poll()
        fetched = live.read(delta.records, delta.metrics, due) if live is not None else None
        return feed, delta, fetched

    def read(self, work: Callable[[], Any], done: Callable[[Any], None], title: str) -> None:
        """`work` reads what a pane shows: from a team server in the background (the pane says
        it is loading), from this project's registry here; then `done(result)` on the UI thread
        (None after an error, which a notice shows)."""
        if self.data.runs.remote:
            self.background(work, title, done=done, always=True, quiet=True)
        else:
            done(work())

    def _show(self, screen: Screen, got: tuple[Any, RunsDelta, Any]) -> None:
        feed, delta, fetched = got
        self.runs.show_delta(feed, delta)
        if isinstance(screen, LiveScreen) and screen in self.screen_stack:
            screen.show(fetched)

    @property
    def active_pane(self) -> str:
        return self.query_one(TabbedContent).active

    def action_refresh(self) -> None:
        self.refresh_data()
        if self.active_pane == "deployments" and not isinstance(self.screen, LiveScreen):
            self.query_one(DeploymentsPane).refresh_data(force=True)
        if self.active_pane == "tuning" and not isinstance(self.screen, LiveScreen):
            self.query_one(TuningPane).refresh_data(force=True)

    def action_pane(self, pane: str) -> None:
        if isinstance(self.screen, LiveScreen):
            self.pop_screen()
        # Focus leaves the old pane first: a focused widget inside it would switch back to it.
        self.set_focus(None)
        self.query_one(TabbedContent).active = pane
        self.query_one(f"#{pane}-table", DataTable).focus()
        if pane != "runs":
            self.refresh_data()

    # -- screens

    def open_run(self, run_id: str) -> None:
        self.push_screen(RunScreen(self.data, run_id, clock=self.clock))

    def open_compare(self, run_ids: list[str]) -> None:
        self.push_screen(CompareScreen(self.data, run_ids))

    # -- actions (the CLI's rules: the same library functions)

    def background(
        self,
        work: Callable[[], Any],
        title: str,
        *,
        done: Callable[[Any], None] | None = None,
        always: bool = False,
        quiet: bool = False,
    ) -> None:
        """Run `work` off the UI thread; its message (a str result) or error becomes a notice,
        then `done(result)` runs on the UI thread (with None after an error when `always`)."""

        def run() -> None:
            try:
                result = work()
            except MllibError as exc:
                message = exc.message + (f"\n{exc.hint}" if exc.hint else "")
                self.call_from_thread(
                    self.notify, message, title=title, severity="error", markup=False, timeout=8
                )
                if done is not None and always:
                    self.call_from_thread(done, None)
                return
            except Exception as exc:  # never take the dashboard down; say what failed
                self.call_from_thread(
                    self.notify,
                    f"{type(exc).__name__}: {exc}",
                    title=title,
                    severity="error",
                    markup=False,
                    timeout=8,
                )
                if done is not None and always:
                    self.call_from_thread(done, None)
                return
            if isinstance(result, str) and not quiet:
                self.call_from_thread(self.notify, result, title=title, markup=False)
            if done is not None:
                self.call_from_thread(done, result)

        self.run_worker(run, thread=True, group=title, exit_on_error=False)

    def confirm(self, question: str, detail: str, then: Callable[[], None]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(Confirm(question, detail), answered)

    def cancel_run(self, run_id: str) -> None:
        self.confirm(
            f"Cancel run {run_id}?",
            "It stops with its whole process tree (as `mllib runs cancel`).",
            lambda: self.background(lambda: self.data.runs.cancel(run_id), "Cancel"),
        )

    def rerun(self, run_id: str) -> None:
        self.confirm(
            f"Run {run_id} again?",
            "Same recorded code, params, seed and runtime, in the background (`mllib runs rerun`).",
            lambda: self.background(lambda: self.data.runs.rerun(run_id), "Rerun"),
        )

    def copy_run_id(self, run_id: str) -> None:
        self.copy_to_clipboard(run_id)
        self.notify(f"Copied {run_id} to the clipboard", title="Run id", markup=False)

    def stop_deployment(self, env: str) -> None:
        self.confirm(
            f"Stop the {env} deployment?",
            "Its server and every process it started stop (`mllib deploy stop`).",
            lambda: self.background(lambda: self.data.deployments.stop(env), "Stop"),
        )

    def rollback_deployment(self, env: str) -> None:
        detail = "The version live before the current one comes back (`mllib deploy rollback`)."
        if env == "prod":
            detail += " On prod this is a strike: your next prod deploy of it waits (cooldown)."
        self.confirm(
            f"Roll {env} back?",
            detail,
            lambda: self.background(
                lambda: self.data.deployments.rollback(env, reason="from mllib dashboard"),
                "Rollback",
            ),
        )

    # -- command palette (ctrl+p)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Runs", "Show the runs table (1)", lambda: self.action_pane("runs"))
        yield SystemCommand(
            "Queue and agents", "Queued and running work, agents (2)",
            lambda: self.action_pane("queue"),
        )  # fmt: skip
        yield SystemCommand(
            "Deployments", "Environments, traffic, rules, history (3)",
            lambda: self.action_pane("deployments"),
        )  # fmt: skip
        yield SystemCommand(
            "Tuning studies", "Trials and the best value so far (4)",
            lambda: self.action_pane("tuning"),
        )  # fmt: skip
        yield SystemCommand("Refresh", "Read everything again now (r)", self.action_refresh)
        runs = self.runs
        if screen is self.screen and not isinstance(screen, LiveScreen):
            yield SystemCommand(
                "Filter runs", "Status, model, user or text (/)", runs.action_filter
            )
            yield SystemCommand(
                "Choose metric", "The metric the table shows (m)", runs.action_metric
            )
            yield SystemCommand(
                "Compare runs", "The marked runs side by side (c)", runs.action_compare
            )
        run_id = screen.run_id if isinstance(screen, RunScreen) else runs.current
        if run_id:
            yield SystemCommand(
                f"Open run {run_id}", "Params, curves, log", lambda: self.open_run(run_id)
            )
            yield SystemCommand(
                f"Cancel run {run_id}", "Asks first (x)", lambda: self.cancel_run(run_id)
            )
            yield SystemCommand(f"Rerun {run_id}", "Asks first (R)", lambda: self.rerun(run_id))
            yield SystemCommand(
                f"Copy run id {run_id}", "To the clipboard (y)", lambda: self.copy_run_id(run_id)
            )
        for env in ("staging", "prod"):
            yield SystemCommand(
                f"Stop {env}",
                "Stop the deployment; asks first",
                lambda e=env: self.stop_deployment(e),
            )
            yield SystemCommand(
                f"Roll back {env}", "Asks first", lambda e=env: self.rollback_deployment(e)
            )


def run(
    start: str | None = None,
    *,
    metric: str | None = None,
    run_filter: RunFilter | None = None,
    limit: int = 1000,
    refresh_s: float = REFRESH_S,
    local: bool = False,
) -> None:
    """Open the project's dashboard in this terminal until the user quits (`local`: this
    project's runs and queue even when a team server is configured)."""
    data = DashboardData.open(start, local=local)
    DashboardApp(data, metric=metric, run_filter=run_filter, limit=limit, refresh_s=refresh_s).run()
