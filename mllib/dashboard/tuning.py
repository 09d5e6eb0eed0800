"""Tuning studies (`mllib tune list`): each study's trials by state against its target, and the
best value of its objective so far; below, the highlighted study's trials (`mllib tune show`) with
the best value up to each. Studies are read in the background every few seconds while the pane is
shown (each read opens every study's Optuna storage); enter opens the best trial's run, or the
highlighted trial's."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.data.studies import StudyRow, TrialRow
from mllib.dashboard.text import fmt_time, fmt_value, safe

STUDIES_EVERY_S = 2.0
STATE_STYLE = {"running": "cyan", "finished": "green", "stopped": "red", "interrupted": "yellow"}
TRIAL_STYLE = {"running": "cyan", "complete": "green", "pruned": "yellow", "failed": "red"}


class TuningPane(Vertical):
    DEFAULT_CSS = """
    TuningPane .heading { height: 1; padding: 0 1; text-style: bold; }
    TuningPane #tuning-table { height: auto; max-height: 40%; }
    TuningPane #trials { height: 1fr; }
    """
    BINDINGS = [Binding("enter", "open", "Open best run")]

    def __init__(self, data: DashboardData, *, clock=time.monotonic) -> None:
        super().__init__()
        self.data = data
        self.clock = clock
        self.rows: list[StudyRow] = []
        self.selected: str | None = None  # the study whose trials are shown
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
        yield Static(id="trials-heading", classes="heading")
        trials: DataTable = DataTable(id="trials", cursor_type="row")
        for key in ("TRIAL", "STATE", "VALUE", "BEST SO FAR", "PARAMS", "RUN"):
            trials.add_column(key, key=key.lower())
        yield trials

    def refresh_data(self, *, force: bool = False) -> None:
        """Read the studies in the background, at most every STUDIES_EVERY_S."""
        if self.reading or (
            not force and self.read_at is not None and self.clock() - self.read_at < STUDIES_EVERY_S
        ):
            return
        self.reading = True
        self.read_at = self.clock()
        selected = self.selected

        def read() -> tuple[list[StudyRow], list[TrialRow]]:
            rows = self.data.studies()
            name = selected if any(r.name == selected for r in rows) else None
            name = name or (rows[0].name if rows else None)
            return rows, self.data.trials(name) if name else []

        def done(result: tuple[list[StudyRow], list[TrialRow]] | None) -> None:
            self.reading = False
            if result is not None:
                self.show(*result)

        self.app.background(read, "Tuning", done=done, always=True, quiet=True)

    def show(self, rows: list[StudyRow], trials: list[TrialRow] | None = None) -> None:
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
        names = [s.name for s in rows]
        self.selected = self.selected if self.selected in names else (names[0] if names else None)
        self._show_trials(trials or [])

    def _show_trials(self, trials: list[TrialRow]) -> None:
        study = next((s for s in self.rows if s.name == self.selected), None)
        heading = self.query_one("#trials-heading", Static)
        table = self.query_one("#trials", DataTable)
        heading.display = table.display = study is not None  # no study: no trials table
        if study is not None:
            heading.update(
                Text(f"Trials of {study.name}: the best {study.metric} up to each (enter: its run)")
            )
        current = table.cursor_row
        table.clear()
        overall = trials[-1].best if trials else None
        for t in trials:
            best = overall is not None and t.value == overall and t.state == "complete"
            table.add_row(
                Text(str(t.number)),
                Text(t.state, style=TRIAL_STYLE.get(t.state, "")),
                Text(fmt_value(t.value), style="green bold" if best else ""),
                Text(fmt_value(t.best), style="green" if t.best is not None else "dim"),
                safe(", ".join(f"{k}={fmt_value(v)}" for k, v in t.params.items()) or "-"),
                Text(t.run_id or "-"),
                key=str(t.number),
            )
        if trials and current:
            table.move_cursor(row=min(current, len(trials) - 1), animate=False)

    def action_open(self) -> None:
        trials = self.query_one("#trials", DataTable)
        if trials.has_focus and trials.row_count:
            run_id = trials.get_row_at(trials.cursor_row)[5].plain
            if run_id != "-":
                self.app.open_run(run_id)
            return
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

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Another study highlighted: show its trials (read in the background)."""
        if event.data_table.id != "tuning-table" or event.row_key.value == self.selected:
            return
        self.selected = event.row_key.value
        self.refresh_data(force=True)
