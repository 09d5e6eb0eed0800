"""The Runs pane: a live table of runs, newest first, with a filter bar and the chosen metric's
newest value and sparkline per run. Only rows that changed since the last refresh are redrawn."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.data.runs import RunFilter, RunRow, RunsDelta, RunsFeed
from mllib.dashboard.table import LiveTable
from mllib.dashboard.text import clean, fmt_duration, safe, sparkline, status
from mllib.errors import MllibError

COLUMNS = (
    ("id", "ID"),
    ("model", "MODEL"),
    ("action", "ACTION"),
    ("status", "STATUS"),
    ("where", "WHERE"),
    ("user", "USER"),
    ("duration", "DURATION"),
    ("value", "METRIC"),
    ("trend", ""),
)
TREND_WIDTH = 12
MARK = "●"


class RunsPane(Vertical):
    """Runs matching the filter (newest `limit`), refreshed by deltas."""

    DEFAULT_CSS = """
    RunsPane #filter { border: none; height: 1; padding: 0 1; }
    RunsPane #runs-table { height: 1fr; }
    RunsPane #runs-status { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "leave_filter", "Back to the table", show=False),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("m", "metric", "Metric"),
        Binding("x", "cancel_run", "Cancel run"),
        Binding("R", "rerun", "Rerun"),
        Binding("y", "copy_id", "Copy id"),
    ]

    def __init__(
        self,
        data: DashboardData,
        *,
        metric: str | None = None,
        run_filter: RunFilter | None = None,
        limit: int = 1000,
        clock=time.time,
    ) -> None:
        super().__init__()
        self.data = data
        self.metric = metric
        self.filter = run_filter or RunFilter()
        self.limit = limit
        self.clock = clock
        self.rows: dict[str, RunRow] = {}
        self.marked: list[str] = []
        self.feed = data.runs_feed(self.filter, metric, limit)
        self.shown_feed: RunsFeed | None = None  # the feed whose window the table shows
        self.pick_metric = metric is None  # the newest runs' first metric, on the first load
        self.records_changed: set[str] = set()  # every run whose record changed in the last poll
        self.pending: RunsDelta | None = None  # changes not drawn yet (a screen covers the table)
        self.reading_metrics = False  # `m` is reading the metric names (from a team server)

    def compose(self) -> ComposeResult:
        yield Input(
            self.filter.describe(),
            placeholder="/ filter: status:running model:NAME user:NAME or words in the id or model",
            id="filter",
        )
        table = LiveTable(id="runs-table", cursor_type="row")
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static(id="runs-status")

    def on_mount(self) -> None:
        self.load()
        self.table.focus()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#runs-table", LiveTable)

    @property
    def current(self) -> str | None:
        """The id of the run under the cursor."""
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    # -- loading and refreshing

    def _default_metric(self) -> str | None:
        """The first metric the newest runs logged (the user picks another with `m`)."""
        newest = [r["id"] for r in self.data.runs.window(RunFilter(), None, 20)["runs"]]
        choices = self.data.runs.metric_choices(newest)
        return choices[0] if choices else None

    def load(self) -> None:
        """Read the window again (after a filter or metric change); from a team server, in the
        background (the table shows the last window until the new one arrives)."""
        feed = self.feed = self.data.runs_feed(self.filter, self.metric, self.limit)

        def read() -> tuple[list[RunRow], int]:
            if self.pick_metric:
                self.pick_metric = False
                self.metric = feed.metric = self._default_metric()
            return feed.load()

        def done(window: tuple[list[RunRow], int] | None) -> None:
            if window is not None and feed is self.feed:
                self._show_window(feed, window[0])

        self.app.read(read, done, "Runs")

    def _show_window(self, feed: RunsFeed, rows: list[RunRow]) -> None:
        self.shown_feed = feed
        self.pending = None
        table = self.table
        current = self.current
        table.clear()
        table.columns["value"].label = Text(clean((self.metric or "metric").upper()))
        self.rows = {r.id: r for r in rows}
        now = self.clock()
        for row in rows:
            table.add_row(*self._cells(row, now), key=row.id)
        if current in self.rows:
            table.move_cursor(row=table.get_row_index(current))
        self._status()

    def poll(self) -> tuple[RunsFeed | None, RunsDelta]:
        """What changed since the last poll of the window shown (off the UI thread for a team
        server); `show_delta` draws it."""
        feed = self.shown_feed
        return feed, feed.poll() if feed is not None else RunsDelta([], [], set())

    def show_delta(self, feed: RunsFeed | None, delta: RunsDelta) -> None:
        """Apply a poll's changes (unless a new window replaced the one polled). While a run or
        compare screen covers the table, changes wait and are drawn on its return."""
        if feed is None or feed is not self.shown_feed:
            return
        self.records_changed = delta.records
        self.pending = _merge(self.pending, delta)
        if self.screen is not self.app.screen:
            return
        self._apply(self.pending)
        self.pending = None

    def _apply(self, delta: RunsDelta | None) -> None:
        if delta is None:
            return
        table = self.table
        now = self.clock()
        added = False
        for run_id in delta.removed:
            if run_id in self.rows:
                del self.rows[run_id]
                table.remove_row(run_id)
        for row in delta.changed:
            known = row.id in self.rows
            self.rows[row.id] = row
            if known:
                self._update(row, now, only_metric=row.id in delta.metrics_only)
            else:
                table.add_row(*self._cells(row, now), key=row.id)
                added = True
        changed = {r.id for r in delta.changed}
        for row in self.rows.values():  # running rows' durations tick
            if row.active and row.id not in changed:
                table.update_row(row.id, {"duration": self._duration(row, now)})
        if added:
            current = self.current
            table.sort(
                "id",
                key=lambda cell: self.rows[cell.plain.lstrip(MARK + " ")].created_at,
                reverse=True,
            )
            if current is not None:
                table.move_cursor(row=table.get_row_index(current), animate=False)
        if delta.changed or delta.removed:
            self._status()

    def _update(self, row: RunRow, now: float, *, only_metric: bool) -> None:
        table = self.table
        cells = dict(zip((k for k, _ in COLUMNS), self._cells(row, now), strict=True))
        keys = ("value", "trend", "duration") if only_metric else cells
        table.update_row(row.id, {key: cells[key] for key in keys})

    def _cells(self, row: RunRow, now: float) -> list[Text]:
        mark = MARK if row.id in self.marked else " "
        value = "-" if row.last is None else row.last
        return [
            Text(f"{mark} {row.id}", style="bold" if row.id in self.marked else ""),
            safe(row.model),
            safe(row.action),
            status(row.status, row.failure_class),
            safe(row.where),
            safe(row.user),
            self._duration(row, now),
            safe(value, style="bold"),
            Text(sparkline(row.metric, TREND_WIDTH), style="cyan"),
        ]

    def _duration(self, row: RunRow, now: float) -> Text:
        return Text(fmt_duration(row.duration_s(now)), justify="right")

    def _status(self) -> None:
        total = self.shown_feed.total if self.shown_feed else 0
        parts = [f"{len(self.rows):,} of {total:,} runs"]
        if self.filter.describe():
            parts.append(f"filter: {self.filter.describe()}")
        if self.metric:
            parts.append(f"metric: {self.metric}")
        if self.marked:
            parts.append(f"{len(self.marked)} marked for compare")
        if self.reading_metrics:
            parts.append("reading the metric names…")
        self.query_one("#runs-status", Static).update(Text(clean(" · ".join(parts))))

    # -- actions

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        if self.current:
            self.app.open_run(self.current)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.table.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            self.filter = RunFilter.parse(event.value)
        except MllibError as exc:
            self.app.notify(exc.message, title="Filter", severity="error", markup=False)
            return
        self.load()
        self.table.focus()

    def action_mark(self) -> None:
        run_id = self.current
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self._update(self.rows[run_id], self.clock(), only_metric=False)
        self._status()

    def action_compare(self) -> None:
        ids = list(self.marked)
        if len(ids) < 2 and self.current and self.current not in ids:
            ids.append(self.current)
        if len(ids) < 2:
            self.app.notify("Mark two or more runs with space, then press c.", title="Compare")
            return
        self.app.open_compare(ids)

    def action_metric(self) -> None:
        from mllib.dashboard.dialogs import Pick

        if self.reading_metrics:
            return
        run_ids = list(self.rows)[:50]

        def chosen(name: str | None) -> None:
            if name and name != self.metric:
                self.metric = name
                self.load()

        def offer(choices: list[str] | None) -> None:
            self.reading_metrics = False
            self._status()
            if choices is None or self.screen is not self.app.screen:
                return  # it failed (a notice says why), or the user went elsewhere meanwhile
            if not choices:
                self.app.notify("No run in the table has logged a metric yet.", title="Metric")
                return
            self.app.push_screen(Pick("Metric to show", choices, self.metric), chosen)

        self.reading_metrics = True
        self._status()
        self.app.read(lambda: self.data.runs.metric_choices(run_ids), offer, "Metric")

    def action_cancel_run(self) -> None:
        if self.current:
            self.app.cancel_run(self.current)

    def action_rerun(self) -> None:
        if self.current:
            self.app.rerun(self.current)

    def action_copy_id(self) -> None:
        if self.current:
            self.app.copy_run_id(self.current)


def _merge(earlier: RunsDelta | None, later: RunsDelta) -> RunsDelta:
    """Two deltas as one: the later row of a run wins; a run removed after a change is removed."""
    if earlier is None:
        return later
    changed = {r.id: r for r in earlier.changed}
    removed = [i for i in earlier.removed if i not in {r.id for r in later.changed}]
    for run_id in later.removed:
        changed.pop(run_id, None)
        removed.append(run_id)
    metrics_only = (earlier.metrics_only | later.metrics_only) - earlier.records - later.records
    changed.update({r.id: r for r in later.changed})
    return RunsDelta(
        list(changed.values()),
        removed,
        metrics_only,
        earlier.records | later.records,
        earlier.metrics | later.metrics,
    )
