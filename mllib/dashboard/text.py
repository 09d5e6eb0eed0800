"""Text the dashboard shows: user-supplied strings (run names, params, metric names, log lines) as
plain text, never as markup, with control characters made visible; values, times and sparklines.

Textual reads a `str` given to a table cell or a Static as markup: `[b]` in a param value would
turn bold and `[link=...]` would make a link. Everything that came from a user goes through `safe`
(a rich Text, which is never parsed), and `clean` escapes what a terminal would act on instead of
print (escape sequences, backspace, bell).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from mllib.display import STATUS_STYLE, fmt_duration, fmt_time, fmt_value

# C0 controls but tab, DEL, C1 controls, and line/paragraph separators that move the cursor.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
SPARKS = "▁▂▃▄▅▆▇█"

__all__ = ["clean", "fmt_duration", "fmt_time", "fmt_value", "safe", "sparkline", "status"]


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\x1b": "\\e"}.get(char, f"\\x{ord(char):02x}")


def clean(text: str) -> str:
    """`text` with control characters spelled out (`\\e[31m`, `\\x07`) and tabs as spaces."""
    return _CONTROL.sub(_escape, text).replace("\t", "    ")


def safe(value: Any, style: str = "") -> Text:
    """A value from a user, formatted as the CLI does, as text that is never read as markup."""
    return Text(clean(value if isinstance(value, str) else fmt_value(value)), style=style)


def status(name: str, failure_class: str | None = None) -> Text:
    text = Text(name, style=STATUS_STYLE.get(name, ""))
    if failure_class:
        text.append(f" ({failure_class})", style="red")
    return text


def sparkline(values: Sequence[float | None], width: int | None = None) -> str:
    """The values as block characters, lowest to highest; NaN and missing ones as spaces."""
    shown = list(values)[-width:] if width else list(values)
    finite = [v for v in shown if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(shown)
    low, high = min(finite), max(finite)
    span = high - low
    chars = []
    for v in shown:
        if v is None or not math.isfinite(v):
            chars.append(" ")
        elif span == 0:
            chars.append(SPARKS[len(SPARKS) // 2])
        else:
            chars.append(SPARKS[round((v - low) / span * (len(SPARKS) - 1))])
    return "".join(chars)
