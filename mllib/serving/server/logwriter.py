"""How a server's processes write their log lines (the format is mllib.serving.logs).

Every process writes whole lines to its stderr with one write() each; a deployment's processes
all share one log file opened for appending, so lines never interleave. Request lines go through
a background writer, so an API server never waits on the disk; mllib's, LitServe's and uvicorn's
Python log records are formatted as the same lines.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

from mllib.serving.logs import LineFormatter, configure, encode

__all__ = ["LineFormatter", "LineWriter", "configure", "uvicorn_log_config"]


class LineWriter:
    """Request log lines written to stderr by a background thread, many per system call.

    An API server must not wait on the disk: a write to a busy file system can take long
    enough to stall every request the event loop holds. Lines are written whole, in order,
    at most `interval_s` after they were logged; `close()` writes what is left.
    """

    def __init__(self, fmt: str, interval_s: float = 0.05) -> None:
        self.fmt = fmt
        self.interval_s = interval_s
        self._lines: collections.deque[bytes] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mllib-log", daemon=True)
        self._thread.start()

    def write(self, fields: dict[str, Any]) -> None:
        self._lines.append(encode(fields, self.fmt))

    def _flush(self) -> None:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        if lines:
            os.write(2, b"".join(lines))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._flush()
        self._flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def uvicorn_log_config(fmt: str, static: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's dictConfig for the API servers: its records as our lines, access log off (we log requests)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "lines": {"()": LineFormatter, "fmt": fmt, "static": static},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
