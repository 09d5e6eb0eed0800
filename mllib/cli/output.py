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


# Output into a file or a pipe is not cut to rich's 80 columns: table cells stay whole and lines
# unwrapped, so logs and `| grep` see everything. COLUMNS, when set, still decides.
UNLIMITED_WIDTH = 10_000


def _width(stream: Any) -> int | None:
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        terminal = False
    return None if terminal or os.environ.get("COLUMNS") else UNLIMITED_WIDTH


@cache
def err() -> Console:
    """Messages for people (headers, summaries, errors) go to stderr, keeping stdout for results."""
    return Console(
        stderr=True,
        highlight=False,
        no_color=plain() or None,
        force_interactive=not plain(),
        width=_width(sys.stderr),
    )


@cache
def out() -> Console:
    return Console(
        highlight=False,
        no_color=plain() or None,
        force_interactive=not plain(),
        soft_wrap=True,
        width=_width(sys.stdout),
    )


def animated() -> bool:
    """Whether progress may be drawn as a live bar or spinner: a terminal, and not CI/NO_COLOR.

    Elsewhere (CI, a log file, a pipe) progress is a few plain lines.
    """
    return not plain() and err().is_terminal


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


def fmt_time(text: str | None) -> str:
    """A registry time (ISO 8601, UTC) as this machine's local time: `2026-01-31 14:05:09`."""
    if not text:
        return "-"
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
