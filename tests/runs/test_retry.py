"""The retry policy backends that can try a run again use (the agents backend): only system
errors, up to max_attempts, after a pause that doubles; the final error says which attempt."""

from __future__ import annotations

from mllib.config import Config
from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR
from mllib.registry.runs import now
from mllib.runs.retry import MAX_BACKOFF_S, RetryPolicy


def test_only_system_errors_are_retried_up_to_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_s=5.0, unreachable_after_s=60.0)
    assert [policy.retries(n, SYSTEM_ERROR) for n in (1, 2, 3)] == [True, True, False]
    assert not policy.retries(1, USER_ERROR) and not policy.retries(1, None)


def test_the_pause_doubles_up_to_a_cap_and_counts_from_the_attempts_end() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_s=5.0, unreachable_after_s=60.0)
    assert [policy.pause_after(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert policy.pause_after(12) == MAX_BACKOFF_S
    assert policy.wait_s(1, None) == 5.0
    assert 4.0 < policy.wait_s(1, now()) <= 5.0


def test_the_final_error_names_the_attempt_after_the_first() -> None:
    policy = RetryPolicy.from_config(Config())
    assert policy.final_reason("killed", 1) == "killed"
    assert policy.final_reason(None, 1) is None
    assert policy.final_reason("killed", 3) == f"killed (attempt 3 of {policy.max_attempts})"
