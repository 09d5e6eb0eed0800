"""Tuning studies (`mllib tune list`): each study's trials by state against its target, and the
best value of its objective so far. Studies are read in the background every few seconds while the
pane is shown (each read opens every study's Optuna storage); enter opens the best trial's run."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mllib.dashboard.data import DashboardData, StudyRow
from mllib.dashboard.text import fmt_time, fmt_value, safe

STUDIES_EVERY_S = 2.0
STATE_STYLE = {"running": "cyan", "finished": "green", "stopped": "red", "interrupted": "yellow"}


class TuningPane(Vertical):
    DEFAULT_CSS = """
    TuningPane .heading { height: 1; padding: 0 1; text-style: bold; }
    TuningPane #tuning-table { height: 1fr; }
    """
    BINDINGS = [Binding("enter", "open", "Open best run")]

    def __init__(self, data: DashboardData, *, clock=time.monotonic) -> None:
        super().__init__()
        self.data = data
        self.clock = clock
        self.rows: list[StudyRow] = []
        self.read_at: float | None = None
        self.reading = False

    def compose(self) -> ComposeResult:
        yield Static("Studies (enter: open the best trial's run)", id="tuning-heading",
                     classes="heading")  # fmt: skip
        table: DataTable = DataTable(id="tuning-table", cursor_type="row")
        for key in ("STUDY", "MODEL", "STATUS", "TRIALS", "RUNNING", "PRUNED", "FAILED",
                    "OBJECTIVE", "BEST", "BEST RUN", "UPDATED"):  # fmt: skip
            table.add_column(key, key=key.lower())
        yield table

    def refresh_data(self, *, force: bool = False) -> None:
        """Read the studies in the background, at most every STUDIES_EVERY_S."""
        if self.reading or (
            not force and self.read_at is not None and self.clock() - self.read_at < STUDIES_EVERY_S
        ):
            return
        self.reading = True
        self.read_at = self.clock()

        def done(rows: list[StudyRow] | None) -> None:
            self.reading = False
            if rows is not None:
                self.show(rows)

        self.app.background(self.data.studies, "Tuning", done=done, always=True, quiet=True)

    def show(self, rows: list[StudyRow]) -> None:
        self.rows = rows
        self.query_one("#tuning-heading", Static).update(
            Text(f"Studies: {len(rows)} (enter: open the best trial's run)")
            if rows
            else Text("No studies yet: start one with `mllib tune model.py --param NAME=KIND:ARGS`")
        )
        table = self.query_one("#tuning-table", DataTable)
        current = table.cursor_row
        table.clear()
        for s in rows:
            done = s.counts.get("complete", 0)
            target = f"/{s.trials_target}" if s.trials_target else ""
            arrow = "↓" if s.direction == "minimize" else "↑"
            table.add_row(
                safe(s.name, "bold"),
                safe(s.model),
                Text(s.status, style=STATE_STYLE.get(s.status, "")),
                Text(f"{done}{target} complete, {s.trials} in all"),
                Text(str(s.counts.get("running", 0))),
                Text(str(s.counts.get("pruned", 0))),
                Text(str(s.counts.get("failed", 0)), style="red" if s.counts.get("failed") else ""),
                safe(f"{s.metric} {arrow}"),
                Text(fmt_value(s.best_value), style="green" if s.best_value is not None else "dim"),
                Text(s.best_run_id or "-"),
                Text(fmt_time(s.updated_at)),
                key=s.name,
            )
        if rows and current:
            table.move_cursor(row=min(current, len(rows) - 1), animate=False)

    def action_open(self) -> None:
        table = self.query_one("#tuning-table", DataTable)
        if not table.row_count or not self.rows:
            return
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        study = next((s for s in self.rows if s.name == name), None)
        if study is None or not study.best_run_id:
            self.app.notify("No trial has completed yet", title="Tuning", markup=False)
            return
        self.app.open_run(study.best_run_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()
