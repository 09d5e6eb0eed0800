"""Retrying a run whose execution failed: only system errors are retried, up to `[retry]
max_attempts`, after `[retry] backoff_s` doubled each time (at most MAX_BACKOFF_S).

A backend whose executions can be tried again elsewhere (the agents backend: another agent; a
queue backend: another worker) decides with this policy; the local backend runs a run once.

>>> policy = RetryPolicy(max_attempts=3, backoff_s=5.0, unreachable_after_s=120.0)
>>> policy.retries(1, SYSTEM_ERROR), policy.retries(3, SYSTEM_ERROR), policy.pause_after(2)
(True, False, 10.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mllib.config import Config, RetrySettings
from mllib.protocol.failure import SYSTEM_ERROR

MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class RetryPolicy(RetrySettings):
    """The `[retry]` settings, and the retry decisions they make."""

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        settings = config.retry
        return cls(max(1, settings.max_attempts), settings.backoff_s, settings.unreachable_after_s)

    def retries(self, attempt: int, failure_class: str | None) -> bool:
        """Whether a run whose attempt `attempt` failed with `failure_class` is tried again."""
        return failure_class == SYSTEM_ERROR and attempt < self.max_attempts

    def pause_after(self, attempt: int) -> float:
        """The pause between attempt `attempt` failing and the next one."""
        return min(MAX_BACKOFF_S, self.backoff_s * 2.0 ** (attempt - 1))

    def wait_s(self, attempt: int, ended_at: str | None) -> float:
        """How much of that pause is left now, for an attempt that ended at `ended_at` (ISO)."""
        if not ended_at:
            return self.pause_after(attempt)
        ended = datetime.fromisoformat(ended_at.replace("Z", "+00:00"))
        return self.pause_after(attempt) - (datetime.now(UTC) - ended).total_seconds()

    def final_reason(self, reason: str | None, attempt: int) -> str | None:
        """The error of a run that failed for good at attempt `attempt`, saying which attempt
        that was when it was not the first."""
        if attempt <= 1:
            return reason
        return f"{reason} (attempt {attempt} of {self.max_attempts})"
