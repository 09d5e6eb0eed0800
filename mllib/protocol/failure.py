"""How a run ended: the worker's exit, the failure classes, and the outcome they make together.

user_error: the model code raised (its traceback is shown); never retried.
system_error: the worker was killed, ran out of memory, or the runtime failed; may be retried.

The worker reports its own failures as an `error` event with one of these classes and exits with
one of the EXIT_ codes; a runtime that fails before or around the worker reports the same way
(see mllib.protocol.events.report_failure), so the supervisor reads every ending alike.

>>> classify(ExitStatus(1), {"failure_class": USER_ERROR, "message": "boom"}, False)
Outcome(status='failed', failure_class='user_error', message='boom')
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

USER_ERROR = "user_error"
SYSTEM_ERROR = "system_error"
FAILURE_CLASSES = (USER_ERROR, SYSTEM_ERROR)

# The worker's exit codes (a signal's death is reported as the signal instead).
EXIT_SUCCEEDED = 0
EXIT_USER_ERROR = 1
EXIT_SYSTEM_ERROR = 3
EXIT_CANCELLED = 143  # 128 + SIGTERM: the supervisor asked it to stop


@dataclass(frozen=True)
class ExitStatus:
    """How the worker ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None = None
    oom: bool = False
    detail: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A run's final status, its failure class when it failed, and the message that says why."""

    status: str  # succeeded, failed, cancelled
    failure_class: str | None = None
    message: str | None = None


def classify(
    exit_status: ExitStatus, error: dict[str, Any] | None, cancel_requested: bool
) -> Outcome:
    """The outcome of a worker that ended with `exit_status` after reporting `error` (its last
    `error` event, or None); a cancel asked for wins over how it ended."""
    if cancel_requested:
        return Outcome("cancelled", None, "cancelled")
    if exit_status.oom:
        return Outcome("failed", SYSTEM_ERROR, exit_status.detail or "the run ran out of memory")
    if error is not None:
        return Outcome("failed", error.get("failure_class") or USER_ERROR, error.get("message"))
    if exit_status.signal is not None:
        name = _signal_name(exit_status.signal)
        why = (
            " (for example by the out-of-memory killer or kill -9)"
            if exit_status.signal == signal.SIGKILL
            else ""
        )
        return Outcome("failed", SYSTEM_ERROR, f"the worker was killed by {name}{why}")
    if exit_status.code == EXIT_SUCCEEDED:
        return Outcome("succeeded")
    detail = f": {exit_status.detail}" if exit_status.detail else ""
    return Outcome(
        "failed",
        SYSTEM_ERROR,
        f"the worker exited with code {exit_status.code} without a report{detail}",
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
