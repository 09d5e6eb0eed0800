"""Deployments: per environment what is deployed (version, traffic split, replicas), its live requests/s,
p50/p99 latency and error rate with their recent history, the deploy rules' state for you
(budget, cooldowns), and the audit log. Stop and rollback go through `mllib deploy`'s own
functions, so the same rules, locks and audit records apply."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mllib.dashboard.data import DashboardData
from mllib.dashboard.text import clean, fmt_time, safe, sparkline

STATE_STYLE = {"live": "green", "starting": "cyan", "failed": "red", "crashed": "red"}
SPARK = 10
STATUS_EVERY_S = 5.0  # each read measures live traffic over a 1 s window


class DeploymentsPane(Vertical):
    DEFAULT_CSS = """
    DeploymentsPane .heading { height: 1; padding: 0 1; text-style: bold; }
    DeploymentsPane #deployments-table { height: auto; max-height: 8; }
    DeploymentsPane #rules { height: auto; padding: 0 1; }
    DeploymentsPane #history { height: 1fr; }
    """
    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("b", "rollback", "Rollback"),
    ]

    def __init__(self, data: DashboardData, *, clock=time.monotonic) -> None:
        super().__init__()
        self.data = data
        self.clock = clock
        self.rows: list[dict] = []
        self.read_at: float | None = None
        self.reading = False

    def compose(self) -> ComposeResult:
        yield Static("Environments (s: stop, b: rollback the selected one)", classes="heading")
        table: DataTable = DataTable(id="deployments-table", cursor_type="row")
        for key in (
            "ENV",
            "STATE",
            "VERSION",
            "TRAFFIC",
            "REPLICAS",
            "REQ/S",
            "P50",
            "P99",
            "ERRORS",
            "SINCE",
        ):
            table.add_column(key, key=key.lower())
        yield table
        yield Static(id="rules")
        yield Static("Recent history", classes="heading")
        history: DataTable = DataTable(id="history", cursor_type="row")
        for key in ("TIME", "USER", "ENV", "ACTION", "RESULT", "MODEL", "DETAIL"):
            history.add_column(key, key=key.lower())
        yield history

    def on_mount(self) -> None:
        self.refresh_data(force=True)

    def refresh_data(self, *, force: bool = False) -> None:
        """Read status in the background (it measures traffic for a second) every few seconds."""
        if self.reading or (
            not force and self.read_at is not None and self.clock() - self.read_at < STATUS_EVERY_S
        ):
            return
        self.reading = True
        self.read_at = self.clock()

        def read() -> tuple[list[dict], list[dict], object]:
            deployments = self.data.deployments
            rows = deployments.status()
            models = sorted({r["model"] for r in rows if r.get("model")})
            return rows, deployments.recent(), deployments.rules(models)

        def done(result) -> None:
            self.reading = False
            if result is not None:
                self.show(*result)

        self.app.background(read, "Deployments", done=done, always=True, quiet=True)

    def show(self, rows: list[dict], history: list[dict], rules) -> None:
        self.rows = rows
        table = self.query_one("#deployments-table", DataTable)
        current = table.cursor_row
        table.clear()
        for r in rows:
            stats = r.get("stats") or {}
            series = r.get("series") or {}
            live = r["state"] == "live"
            version = f"{r['model']} v{r['version']}" if r.get("model") else "-"
            table.add_row(
                Text(r["env"], style="bold"),
                Text(r["state"], style=STATE_STYLE.get(r["state"], "dim")),
                safe(version),
                safe(traffic(r) if live else "-"),
                Text(replicas(r)),
                _stat(stats.get("rps"), "{:.1f}", series.get("rps")),
                _stat(stats.get("p50_ms"), "{:.1f}ms", series.get("p50_ms")),
                _stat(stats.get("p99_ms"), "{:.1f}ms", series.get("p99_ms")),
                _stat(stats.get("error_rate"), "{:.2%}", series.get("error_rate")),
                Text(fmt_time(r.get("live_at") or r.get("created_at"))),
                key=r["env"],
            )
        if rows:
            table.move_cursor(row=min(current, len(rows) - 1), animate=False)
        self._show_rules(rows, rules)
        hist = self.query_one("#history", DataTable)
        hist.clear()
        for h in history:
            model = f"{h['model']} v{h['version']}" if h["model"] else (h["key_id"] or "")
            hist.add_row(
                Text(fmt_time(h["at"])),
                safe(h["user"] or "-"),
                safe(h["env"] or "-"),
                safe(h["action"]),
                safe(h["result"]),
                safe(model),
                safe(h["reason"] or ""),
            )

    def _show_rules(self, rows: list[dict], rules) -> None:
        text = Text()
        text.append("Rules for ", style="dim")
        text.append_text(safe(rules.user))
        text.append(f": prod deploy budget {rules.budget:.1f}/{rules.budget_burst:g}")
        for model, message in rules.cooldowns.items():
            text.append("\ncooldown ", style="yellow")
            text.append_text(safe(f"{model}: {message}"))
        for r in rows:
            if r["state"] in ("failed", "crashed") and r.get("error"):
                text.append(f"\n{r['env']}: ", style="red")
                text.append(clean(r["error"]))
        self.query_one("#rules", Static).update(text)

    @property
    def current_env(self) -> str | None:
        table = self.query_one("#deployments-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_stop(self) -> None:
        env = self.current_env
        if env:
            self.app.stop_deployment(env)

    def action_rollback(self) -> None:
        env = self.current_env
        if env:
            self.app.rollback_deployment(env)


def _stat(value, fmt: str, series) -> Text:
    if value is None:
        return Text("-")
    text = Text(fmt.format(value))
    if series and len([v for v in series if v is not None]) > 1:
        text.append(" " + sparkline(series, SPARK), style="cyan")
    return text


def traffic(row: dict) -> str:
    """How a live deployment's requests split between its variants, as `deploy status` shows
    it: `90% v3 · 10% v4 canary`; a shadow gets copies, not a share."""
    variants = row.get("variants") or []
    if not variants:
        return f"100% v{row['version']}" if row.get("version") else "-"
    parts = []
    for v in variants:
        if v["name"] == "shadow":
            parts.append(f"shadow v{v['version']}")
        else:
            label = "" if v["name"] == "stable" else f" {v.get('mode') or v['name']}"
            parts.append(f"{v['weight']:g}% v{v['version']}{label}")
    return " · ".join(parts)


def replicas(row: dict) -> str:
    """Ready replicas of the total (replicas loading or draining count in the total), else the
    worker count of a deployment without replica records."""
    found = row.get("replicas") or []
    if found:
        ready = sum(1 for r in found if r.get("state") == "ready")
        return f"{ready}/{len(found)}"
    workers = row.get("workers")
    if workers and row.get("inference"):
        return f"{workers} ({row['inference']})"
    return str(workers or "-")
