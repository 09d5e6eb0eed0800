"""The threads of `mllib server start` that do one thing every few seconds or minutes (the
schedules' ticker, the housekeeping): each pass in a try, so a lost database or a busy store only
costs that pass, said on the server's log, and the next one tries again."""

from __future__ import annotations

import sys
import threading


class Periodic:
    """Runs `step()` at once, then every `every_s` seconds, on a daemon thread until `stop()`."""

    name = "periodic"  # the thread's name, and what its log lines begin with
    every_s = 60.0

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as exc:  # the next pass tries again
                log(f"{self.name}: {exc}")
            self.stopping.wait(self.every_s)


def log(line: str) -> None:
    """A line on the server's log (its standard error)."""
    print(f"mllib server: {line}", file=sys.stderr, flush=True)
