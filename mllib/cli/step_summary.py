"""Markdown tables for the page of a CI job: when `GITHUB_STEP_SUMMARY` names a file (GitHub
Actions sets it for each step), train, evaluate, runs compare, deploy and loadtest append what
they did to it. Nothing happens without the variable."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from mllib.cli.output import fmt_value

VARIABLE = "GITHUB_STEP_SUMMARY"


def enabled() -> bool:
    return bool(os.environ.get(VARIABLE))


def append(markdown: str) -> None:
    """Append `markdown` (then a blank line) to the step summary file, when there is one."""
    path = os.environ.get(VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown.rstrip("\n") + "\n\n")


def text(value: Any) -> str:
    return value if isinstance(value, str) else fmt_value(value)


def cell(value: Any) -> str:
    """A value as a table cell: pipes escaped, newlines as spaces."""
    return text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run(data: Mapping[str, Any], breaches: list[str] | None = None) -> str:
    """A run's outcome: one row of what it was, then its metrics and the gates."""
    parts = [
        f"### mllib run `{data['id']}`",
        table(
            ["run", "model", "action", "status", "runtime", "duration", "model version"],
            [
                [
                    data["id"],
                    data["model"],
                    data["action"],
                    data["status"]
                    + (f" ({data['failure_class']})" if data.get("failure_class") else ""),
                    data.get("runtime") or "",
                    f"{data['duration_s']:.1f}s" if data.get("duration_s") is not None else "",
                    data.get("model_version") or "",
                ]
            ],
        ),
    ]
    metrics = [("eval", k, v) for k, v in (data.get("eval_metrics") or {}).items()]
    metrics += [("last", k, v) for k, v in (data.get("metrics") or {}).items()]
    if metrics:
        parts.append(table(["", "metric", "value"], metrics))
    if data.get("error"):
        parts.append(f"**Error:** {cell(data['error'])}")
    if breaches is not None:
        parts.append(
            "**Gates:** " + ("passed" if not breaches else "failed: " + "; ".join(breaches))
        )
    return "\n\n".join(parts)


def comparison(data: Mapping[str, Any]) -> str:
    """`runs compare`'s data: one column per run, ★ on the best value of each metric."""
    runs = list(data["runs"])
    rows = []
    for section in ("params", "metrics", "eval_metrics"):
        for key, values in data[section].items():
            best = data["best"].get(section, {}).get(key) if section != "params" else None
            differs = key in data["differs"][section]
            cells = []
            for run_id in runs:
                shown = text(values.get(run_id))
                cells.append(f"**{shown}** ★" if differs and best == run_id else shown)
            rows.append([section.replace("_", " "), key, *cells])
    return "### mllib runs compare\n\n" + table(["", "name", *[f"`{r}`" for r in runs]], rows)


def deployment(env: str, label: str, url: str, state: str, note: str = "") -> str:
    return "### mllib deploy\n\n" + table(
        ["env", "model", "state", "url", "note"], [[env, label, state, url, note]]
    )
