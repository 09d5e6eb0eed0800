"""Queue and agents: queued and running work by user and priority, and the agents with their GPU
slots, what occupies them and whether they answer. Both come from a `QueueSource`: the team server
when one is configured (read in the background), else the local registry
(`mllib.dashboard.data.queue.queue_source`)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.data.queue import AgentRow, QueueItem
from mllib.dashboard.text import fmt_duration, safe, status

SERVER_EVERY_S = 1.0


class QueuePane(Vertical):
    DEFAULT_CSS = """
    QueuePane .heading { height: 1; padding: 0 1; text-style: bold; }
    QueuePane #queue-table { height: 1fr; }
    QueuePane #agents { height: 1fr; }
    """
    BINDINGS = [
        Binding("k", "check_agents", "Check agents"),
        Binding("enter", "open", "Open run"),
    ]

    def __init__(self, data: DashboardData, *, clock=time.time) -> None:
        super().__init__()
        self.data = data
        self.clock = clock
        self.checking = False
        self.reading = False
        self.read_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="queue-heading", classes="heading")
        queue: DataTable = DataTable(id="queue-table", cursor_type="row")
        for key in ("USER", "PRIORITY", "RUN", "MODEL", "STATUS", "WAITING", "WHERE"):
            queue.add_column(key, key=key.lower())
        yield queue
        yield Static(Text(self.data.queue.agents_title), id="agents-heading", classes="heading")
        agents: DataTable = DataTable(id="agents", cursor_type="row")
        for key in ("AGENT", "ADDRESS", "GPUS", "SLOTS", "OCCUPIED BY", "REACHABLE"):
            agents.add_column(key, key=key.lower())
        yield agents

    def on_mount(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        source = self.data.queue
        if not getattr(source, "remote", False):
            self.show(source.queue())
            return
        # A team server answers over the network: read it in the background, one read at a time,
        # at most every SERVER_EVERY_S.
        now = time.monotonic()
        if self.reading or (self.read_at is not None and now - self.read_at < SERVER_EVERY_S):
            return
        self.reading = True
        self.read_at = now

        def done(items: list[QueueItem] | None) -> None:
            self.reading = False
            if items is not None:
                self.show(items)

        self.app.background(source.queue, "Queue", done=done, always=True, quiet=True)

    def show(self, queue: list[QueueItem]) -> None:
        source = self.data.queue
        items = sorted(queue, key=lambda q: (q.user, -(q.priority or 0), q.created_at or ""))
        self.query_one("#queue-heading", Static).update(
            Text(f"Queue ({source.name}): {len(items)} queued or running")
        )
        self._fill_queue(items)
        self._fill_agents(source.agents())

    def _fill_queue(self, items: list[QueueItem]) -> None:
        table = self.query_one("#queue-table", DataTable)
        current = table.cursor_row
        table.clear()
        from datetime import datetime

        now = self.clock()
        for q in items:
            waiting = "-"
            if q.created_at:
                created = datetime.fromisoformat(q.created_at.replace("Z", "+00:00")).timestamp()
                waiting = fmt_duration(max(0.0, now - created))
            table.add_row(
                safe(q.user),
                Text("-" if q.priority is None else str(q.priority)),
                Text(q.run_id),
                safe(q.model),
                status(q.status),
                Text(waiting),
                safe(q.where),
                key=q.run_id,
            )
        if items:
            table.move_cursor(row=min(current, len(items) - 1), animate=False)

    def _fill_agents(self, agents: list[AgentRow]) -> None:
        table = self.query_one("#agents", DataTable)
        table.clear()
        for a in agents:
            if a.reachable is None:
                reach = Text("checking…" if self.checking else "not checked", style="dim")
            elif a.reachable:
                reach = Text("yes", style="green")
            else:
                reach = Text("no: ", style="red") + safe(a.problem or "")
            used = len(a.busy) if a.used is None else a.used
            slots = f"{used}/{a.slots}" if a.slots is not None else f"{used}/?"
            table.add_row(
                safe(a.name),
                safe(a.address),
                Text("auto" if a.gpus is None else str(a.gpus)),
                Text(slots),
                safe(", ".join(a.busy) or "-"),
                reach,
                key=a.name,
            )
        if not agents:
            table.add_row(Text(self.data.queue.no_agents, style="dim"), *[""] * 5)

    def action_check_agents(self) -> None:
        if self.checking:
            return
        self.checking = True
        self._fill_agents(self.data.queue.agents())

        def done(_: object) -> None:
            self.checking = False
            self._fill_agents(self.data.queue.agents())

        self.app.background(self.data.queue.check_agents, "Agents", done=done, always=True)

    def action_open(self) -> None:
        table = self.query_one("#queue-table", DataTable)
        if table.has_focus and table.row_count:
            run_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if run_id:
                self.app.open_run(run_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "queue-table":
            self.action_open()
