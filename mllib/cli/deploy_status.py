"""How `mllib deploy status` prints: one table row per environment where the terminal is wide
enough for every column whole, else a few lines per environment (nothing cut to `stag…`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mllib.cli import output

COLUMNS = ("ENV", "STATE", "MODEL", "URL", "REPLICAS", "REQ/S", "P50", "P99", "ERRORS", "SINCE")
INDENT = 9  # the environment's name, then what it runs
STATE_STYLE = {
    "live": "green", "starting": "cyan", "restarting": "yellow", "failed": "red", "crashed": "red",
}  # fmt: skip


def print_status(rows: list[dict[str, Any]], console: Console) -> None:
    """Print `deploy status` rows (as `mllib.serving.control.status.status` returns them); a
    rollout's variants, each with its figures, on lines of their own."""
    table = _table(rows)
    unbounded = console.options.update_width(10_000)
    rollout = any(len(row.get("variants") or []) > 1 for row in rows)
    if not rollout and Measurement.get(console, unbounded, table).maximum <= console.width:
        console.print(table)
        return
    for row in rows:
        console.print(_lines(row))


def _replicas(row: dict[str, Any]) -> str:
    """`2 (inline)`: ready replicas of stable, and where they run when on agents (`2 (worker) on
    agents gpu1, gpu2`; the gateway here is no replica); with a rollout, `+ 1 canary v4 (10%)`."""
    ready = [r for r in row.get("replicas") or [] if r["state"] == "ready"]
    gateway = row.get("gateway") or []
    variants = row.get("variants") or []
    if ready or gateway:
        count = sum(1 for r in ready if r["variant"] == "stable")
    else:  # a deployment of one server, before replicas: its workers
        count = row.get("workers")
    if not count and not gateway:
        return "-"
    text = f"{count} ({row['inference']})" if row.get("inference") else str(count)
    stable = next((v for v in variants if v["name"] == "stable"), {})
    text += _where(stable.get("hosts") or {})
    if gateway and not count:
        text += " · the gateway here answers until one is ready"
    for variant in variants:
        if variant["name"] != "stable":
            share = f"{variant['weight']:g}%"
            text += f" + {variant['replicas']} {variant['name']} v{variant['version']} ({share})"
            text += _where(variant.get("hosts") or {})
    return text


def _where(hosts: dict[str, int]) -> str:
    """` on agents gpu1 (2), gpu2`: the agents of a variant's ready replicas, with how many
    where more than one; "" when they all run here."""
    agents = [f"{h} ({n})" if n > 1 else h for h, n in sorted(hosts.items()) if h != "local"]
    return f" on agents {', '.join(agents)}" if agents else ""


def _fields(row: dict[str, Any]) -> dict[str, str]:
    stats = row.get("stats") or {}
    return {
        "ENV": row["env"],
        "STATE": ((row.get("restart") or {}).get("summary") if row["state"] == "live" else None)
        or row["state"],
        "MODEL": f"{row['model']} v{row['version']}" if row.get("model") else "-",
        "URL": row.get("url") or "-",
        "REPLICAS": _replicas(row),
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
        text.append(f"\n{indent}replicas {f['REPLICAS']} · since {f['SINCE']}")
    if row.get("stats"):
        text.append(
            f"\n{indent}{f['REQ/S']} req/s · p50 {f['P50']} · p99 {f['P99']} · errors {f['ERRORS']}"
        )
    variants = row.get("variants") or []
    for variant in variants if len(variants) > 1 else []:
        stats = variant.get("stats") or {}
        failing = f" · failing: {variant['failing']}" if variant.get("failing") else ""
        text.append(
            f"\n{indent}{variant['name']} v{variant['version']} {variant['weight']:g}%: "
            f"{_num(stats.get('rps'), '{:.1f}')} req/s · p50 {_num(stats.get('p50_ms'), '{:.1f}ms')}"
            f" · p99 {_num(stats.get('p99_ms'), '{:.1f}ms')}"
            f" · errors {_num(stats.get('error_rate'), '{:.2%}')}{failing}"
        )
    return text


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state.split(" ")[0], "dim"))


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
