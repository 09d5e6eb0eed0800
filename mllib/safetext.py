"""Text a user supplied, made safe to show on a terminal: control characters as visible escapes.

Standard library only, so every part of mllib (the agent program too, which has no rich) shows
user text the same way; mllib.terminal builds the consoles' rendering on it.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that make
# text read otherwise than it is (a "Trojan Source" file name).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """`value` as text a terminal shows as it is: control characters as escapes (`\\x1b`,
    `\\u202e`); tabs and newlines kept."""
    return _CONTROL.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
