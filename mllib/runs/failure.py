"""How a run ended: status and failure class from the worker's exit and its last report.

user_error: the model code raised (its traceback is shown); never retried.
system_error: the worker was killed, ran out of memory, or the runtime failed; may be retried.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from mllib.runtime.base import ExitStatus

USER_ERROR = "user_error"
SYSTEM_ERROR = "system_error"


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded, failed, cancelled
    failure_class: str | None = None
    message: str | None = None


def classify(
    exit_status: ExitStatus, error: dict[str, Any] | None, cancel_requested: bool
) -> Outcome:
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
    if exit_status.code == 0:
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
