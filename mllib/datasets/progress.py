"""How long transfers report progress: a tiny interface the CLI draws as a bar (or plain lines in CI).

The library only calls it; `mllib.cli.progress` renders it. Uploads, downloads, materialising a
dataset and sending chunks to an agent all report through the same three calls.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int | None, done: int = 0) -> None:
        """Begin (or begin again) a transfer of `total` bytes (None: unknown), `done` already."""

    def advance(self, nbytes: int) -> None: ...

    def note(self, message: str) -> None:
        """A one-line message for the user (resuming, retrying, starting over)."""


class NoProgress:
    """Reports nothing: the default for library calls."""

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass
