"""Compare: two or more runs side by side as `mllib runs compare` shows them (differences in
yellow, the best value per metric starred), with one metric's curves overlaid."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.plot import Chart, Series
from mllib.dashboard.screen import LiveScreen
from mllib.dashboard.text import clean, safe

SECTIONS = ("params", "metrics", "eval_metrics")
METRICS_EVERY_S = 2.0


@dataclass
class Comparison:
    """One read of the compared runs: `runs compare --json`, the metric to overlay, its curves."""

    result: dict
    metric: str | None
    series: dict[str, tuple[list[int], list[float]]]


class CompareScreen(LiveScreen):
    """The runs `run_ids`; redrawn when one of them changes."""

    DEFAULT_CSS = """
    CompareScreen #compare-title { height: 1; padding: 0 1; background: $panel; }
    CompareScreen #compare { height: 1fr; }
    CompareScreen #compare-chart { height: 1fr; padding: 0 1; }
    CompareScreen #compare-legend { height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("n", "next_metric", "Next metric"),
    ]

    def __init__(self, data: DashboardData, run_ids: list[str]) -> None:
        super().__init__(data)
        self.run_ids = run_ids
        self.result: dict = {}
        self.metric: str | None = None
        self.read_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title")
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Static(
            "yellow: differs · ★ best (lowest for loss/error-like metrics, highest otherwise)",
            id="compare-legend",
        )
        yield Chart(id="compare-chart")
        yield Footer()

    def read(self, records: set[str], metrics: set[str], due: bool) -> Comparison | None:
        """The comparison again when a run's record changed, and for new points at most every
        few seconds (a comparison reads every point's summary); off the UI thread for a team
        server, then `show` draws it."""
        ids = set(self.result.get("runs", self.run_ids))
        every = time.monotonic() - self.read_at >= METRICS_EVERY_S
        if due or ids & records or (ids & metrics and every):
            return self._compare()
        return None

    def show_loading(self) -> None:
        what = f"{self.metric} " if self.metric else ""
        if not self.result:
            self.query_one("#compare-title", Static).update(
                Text(f"Compare {len(self.run_ids)} runs: loading from the team server…")
            )
        self.query_one(Chart).show([], clean(f"loading {what}…"))

    def _compare(self) -> Comparison:
        self.read_at = time.monotonic()
        result = self.data.runs.compare(self.run_ids)
        names = list(result["metrics"])
        metric = self.metric if self.metric in names else (names[0] if names else None)
        series = self.data.runs.series(result["runs"], metric) if metric else {}
        return Comparison(result, metric, series)

    def show(self, comparison: Comparison | None) -> None:
        if comparison is None:
            return
        self.result = r = comparison.result
        self.run_ids = r["runs"]  # full ids
        self.metric = comparison.metric
        self.query_one("#compare-title", Static).update(
            Text(f"Compare {len(r['runs'])} runs", style="bold")
        )
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("", key="name")
        for run_id in r["runs"]:
            table.add_column(run_id, key=run_id)
        for section in SECTIONS:
            if not r[section]:
                continue
            table.add_row(Text(section.replace("_", " "), style="bold"), *[""] * len(r["runs"]))
            for name, values in r[section].items():
                differs = name in r["differs"][section]
                best = r["best"][section].get(name) if section != "params" else None
                cells = []
                for run_id in r["runs"]:
                    cell = safe(values.get(run_id))
                    if differs and best == run_id:
                        cell.stylize("bold green")
                        cell.append(" ★")
                    elif differs:
                        cell.stylize("yellow")
                    cells.append(cell)
                table.add_row(Text("  ") + safe(name), *cells)
        self._draw(comparison.series)

    def _draw(self, found: dict[str, tuple[list[int], list[float]]]) -> None:
        chart = self.query_one(Chart)
        if self.metric is None:
            chart.show([], "no metrics to overlay")
            return
        chart.show(
            [Series(run_id, *points) for run_id, points in found.items()],
            clean(f"{self.metric} (n: next metric)"),
        )

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_metric(self) -> None:
        names = list(self.result.get("metrics", {}))
        if not names:
            return
        index = names.index(self.metric) + 1 if self.metric in names else 0
        self.metric = names[index % len(names)]
        self.ask()  # its curves, read as the comparison is
