"""How `mllib deploy status` prints: one table row per environment where the terminal is wide
enough for every column whole, else a few lines per environment (nothing cut to `stag…`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mllib.cli import output

COLUMNS = ("ENV", "STATE", "MODEL", "URL", "WORKERS", "REQ/S", "P50", "P99", "ERRORS", "SINCE")
INDENT = 9  # the environment's name, then what it runs
STATE_STYLE = {"live": "green", "starting": "cyan", "failed": "red", "crashed": "red"}


def print_status(rows: list[dict[str, Any]], console: Console) -> None:
    """Print `deploy status` rows (as `mllib.serving.control.status.status` returns them)."""
    table = _table(rows)
    unbounded = console.options.update_width(10_000)
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        console.print(table)
        return
    for row in rows:
        console.print(_lines(row))


def _fields(row: dict[str, Any]) -> dict[str, str]:
    stats = row.get("stats") or {}
    workers = row.get("workers")
    if workers and row.get("inference"):
        workers = f"{workers} ({row['inference']})"
    return {
        "ENV": row["env"],
        "STATE": row["state"],
        "MODEL": f"{row['model']} v{row['version']}" if row.get("model") else "-",
        "URL": row.get("url") or "-",
        "WORKERS": str(workers or "-"),
        "REQ/S": _num(stats.get("rps"), "{:.1f}"),
        "P50": _num(stats.get("p50_ms"), "{:.1f}ms"),
        "P99": _num(stats.get("p99_ms"), "{:.1f}ms"),
        "ERRORS": _num(stats.get("error_rate"), "{:.2%}"),
        "SINCE": output.fmt_time(row.get("live_at") or row.get("created_at")),
    }


def _table(rows: list[dict[str, Any]]) -> Table:
    table = output.table(*COLUMNS, whole=COLUMNS)
    for row in rows:
        fields = _fields(row)
        table.add_row(*(_state(fields[c]) if c == "STATE" else fields[c] for c in COLUMNS))
    return table


def _lines(row: dict[str, Any]) -> Text:
    """One environment in up to three short lines: what runs where, since when, its traffic."""
    f = {key: output.printable(value) for key, value in _fields(row).items()}
    indent = " " * INDENT
    text = Text.assemble((f"{f['ENV']:<{INDENT}}", "bold"), _state(f["STATE"]))
    if row.get("model"):
        text.append(f"  {f['MODEL']}  {f['URL']}")
        text.append(f"\n{indent}workers {f['WORKERS']} · since {f['SINCE']}")
    if row.get("stats"):
        text.append(
            f"\n{indent}{f['REQ/S']} req/s · p50 {f['P50']} · p99 {f['P99']} · errors {f['ERRORS']}"
        )
    return text


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "dim"))


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
