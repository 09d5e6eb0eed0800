"""The channel in a shipped job's log: what the node sends back besides the worker's output.

A node without this machine's files cannot leave the worker's events and outputs in the run
folder, so the node's side (mllib.runtime.ray.node) writes them into the job's log as records,
each one line `MARK NONCE JSON` in one write, and the supervisor's side takes them out again
(Reader). The nonce is the attempt's own, so a worker that prints MARK cannot forge a record.
A record may land in the middle of a line of output: taken out whole (its newline with it), it
leaves the output as the worker wrote it.

>>> reader = Reader("ab12")
>>> reader.feed("loss 0.5" + record("ab12", "e", '{"type": "metric"}') + "\\n")
('loss 0.5\\n', [('e', '{"type": "metric"}')])
"""

from __future__ import annotations

import json
from typing import Any

MARK = "\x1emllib-ray "
EVENT = "e"  # one line of the worker's events file
OUTPUTS = "o"  # a base64 chunk of the outputs' tar.gz (model, artifacts, prediction)
END = "end"  # the outputs are whole: {"bytes": N}


def record(nonce: str, kind: str, payload: Any) -> str:
    """One record, as the node writes it."""
    return f"{MARK}{nonce} {json.dumps([kind, payload])}\n"


class Reader:
    """Takes an attempt's records out of its log text as it streams, chunk by chunk."""

    def __init__(self, nonce: str) -> None:
        self.marker = f"{MARK}{nonce} "
        self.held = ""  # text that may be the start of a record, until the rest comes

    def feed(self, text: str) -> tuple[str, list[tuple[str, Any]]]:
        """(the output in `text`, the records in it); what may begin a record is held back."""
        text, self.held = self.held + text, ""
        out: list[str] = []
        found: list[tuple[str, Any]] = []
        while text:
            start = text.find(self.marker)
            if start < 0:
                keep = _partial_marker(text, self.marker)
                out.append(text[: len(text) - keep])
                self.held = text[len(text) - keep :]
                break
            end = text.find("\n", start)
            if end < 0:  # the record's rest comes in a later chunk
                out.append(text[:start])
                self.held = text[start:]
                break
            out.append(text[:start])
            try:
                kind, payload = json.loads(text[start + len(self.marker) : end])
                found.append((kind, payload))
            except (ValueError, TypeError):  # not one of ours after all: it is output
                out.append(text[start : end + 1])
            text = text[end + 1 :]
        return "".join(out), found

    def flush(self) -> str:
        """What was held at the end of the log: output after all."""
        rest, self.held = self.held, ""
        return rest


def _partial_marker(text: str, marker: str) -> int:
    """How many of `text`'s last characters are the start of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
