"""A run handle for runtimes that prepare before the worker starts (build an image or a venv).

The preparation runs on a thread, so `Runtime.start` returns at once and a cancel during a long
build is heard; its lines go to `Job.progress` (or the output), and a failure before the worker
ran is reported the way the worker reports its own (an `error` event) with its failure class.
Subclasses write `_lifecycle` (prepare, start, stream, return an ExitStatus) and `_stop`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from mllib.protocol.events import report_failure
from mllib.protocol.failure import (
    EXIT_CANCELLED,
    EXIT_SYSTEM_ERROR,
    EXIT_USER_ERROR,
    USER_ERROR,
    ExitStatus,
)
from mllib.protocol.folder import RunFolder
from mllib.runtime.base import Job

_DONE = object()
CANCEL_WAIT_S = 20.0  # how long a cancelled run waits for its preparation to wind down


class PreparedHandle:
    """One run whose runtime prepares first; see the module docstring."""

    pid: int | None = None  # the worker's pid, once it runs on this host (None: not yet, or none)

    def __init__(self, job: Job) -> None:
        self.job = job
        self.ident = "preparing"
        self._chunks: queue.Queue[Any] = queue.Queue()
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._status: ExitStatus | None = None

    def begin(self) -> None:
        threading.Thread(
            target=self._run_lifecycle, name=f"mllib-{self.job.run_id}", daemon=True
        ).start()

    def output(self) -> Iterator[bytes]:
        while (chunk := self._chunks.get()) is not _DONE:
            yield chunk

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        self._done.wait(timeout)
        return self._status

    def _run_lifecycle(self) -> None:
        status = ExitStatus(EXIT_SYSTEM_ERROR)
        try:
            status = self._lifecycle()
        finally:
            self._finish(status)

    def _lifecycle(self) -> ExitStatus:
        raise NotImplementedError

    def _finish(self, status: ExitStatus) -> None:
        """Report the end once (the lifecycle and a cancel's timer may both try)."""
        with self._lock:
            if not self._done.is_set():
                self._status = status
                self._chunks.put(_DONE)
                self._done.set()

    def _finish_cancelled_soon(self) -> None:
        """A cancel while preparing (perhaps waiting on another run's build lock): report the
        run cancelled after CANCEL_WAIT_S even if the preparation has not stopped by then."""
        timer = threading.Timer(CANCEL_WAIT_S, self._finish, (ExitStatus(EXIT_CANCELLED),))
        timer.daemon = True
        timer.start()

    def _progress(self, line: str) -> None:
        if self.job.progress is not None:
            self.job.progress(line)
        else:
            self._chunks.put(line.encode() + b"\n")

    def _fail(self, failure_class: str, message: str) -> ExitStatus:
        """Report a failure outside the worker the way the worker reports its own."""
        if self._cancel.is_set():  # a cancelled build or start is no failure
            return ExitStatus(EXIT_CANCELLED)
        with contextlib.suppress(OSError):
            report_failure(RunFolder(self.job.run_dir).events_file, failure_class, message)
        self._chunks.put(f"mllib: {message}\n".encode())
        code = EXIT_USER_ERROR if failure_class == USER_ERROR else EXIT_SYSTEM_ERROR
        return ExitStatus(code, detail=message)
