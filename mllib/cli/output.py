"""Terminal output: rich consoles that respect NO_COLOR and CI=true (plain text, no animation)."""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import Any

from rich.console import Console


def plain() -> bool:
    """True in CI or when NO_COLOR is set: no colour, spinners or progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or "NO_COLOR" in os.environ


@cache
def err() -> Console:
    """Messages for people (headers, summaries, errors) go to stderr, keeping stdout for results."""
    return Console(
        stderr=True, highlight=False, no_color=plain() or None, force_interactive=not plain()
    )


@cache
def out() -> Console:
    return Console(
        highlight=False, no_color=plain() or None, force_interactive=not plain(), soft_wrap=True
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
}


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
