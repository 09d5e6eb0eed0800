"""Whether a canary is worse than the stable version it runs beside, judged by the controller every
tick over the last `window_s` of both variants' traffic (a canary's warm-up, warmup.py, is
never judged): requests and errors as the stable server's processes saw them, latency as
each version's own processes measured it (the hop to the candidate's server is not the version's).

A canary fails when, with at least `min_requests` of its own requests in the window, its error
rate is more than `max_error_rate_increase` above stable's, or its p99 is more than
`max_p99_increase` (a fraction) above stable's and at least `min_p99_increase_ms` above it (so
sub-millisecond noise never fails a canary). Stable with too few requests to compare against is
taken to be at 0 errors and at the latency objective. With fewer requests than that, a canary
that looks worse is `failing` but not yet judged: it is not rolled back, and it cannot be
promoted.

>>> from mllib.serving.counters import ZERO, Totals
>>> slow = Totals(0, 300, 0, 0, 0, (0,) * 12 + (300,) + (0,) * 7)
>>> fast = Totals(0, 3000, 0, 0, 0, (3000,) + (0,) * 19)
>>> judge(Rollout(), canary=slow, stable=fast, objective_s=0.1).breached
True
"""

from __future__ import annotations

from dataclasses import dataclass

from mllib.serving.counters import Totals, quantile


@dataclass(frozen=True)
class Rollout:
    """[rollout]: how canaries are judged and promoted."""

    window_s: float = 5.0  # judged over this much of the latest traffic
    min_requests: int = 200  # canary requests in the window before it may be rolled back
    max_error_rate_increase: float = 0.01  # over stable's error rate (0.01: one point)
    max_p99_increase: float = 0.5  # over stable's p99 (0.5: 50% slower)
    min_p99_increase_ms: float = 10.0  # and at least this much slower
    auto_rollback: bool = True
    promote_steps: str = "25,50,100"  # `deploy promote`'s default steps (percent)
    promote_interval_s: float = 60.0  # between steps
    shadow_percent: float = 100.0  # the share of requests `--shadow` copies


@dataclass(frozen=True)
class Verdict:
    failing: str | None  # why the canary looks worse (None: it does not)
    breached: bool  # failing with enough requests: roll it back
    canary: dict
    stable: dict


def figures(totals: Totals) -> dict:
    """Requests, error rate and p50/p99 (ms) of one variant over the window."""
    p50, p99 = quantile(0.5, totals.buckets), quantile(0.99, totals.buckets)
    return {
        "requests": totals.requests,
        "error_rate": round(totals.errors / totals.requests, 4) if totals.requests else None,
        "p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "p99_ms": None if p99 is None else round(p99 * 1000, 2),
    }


def judge(rules: Rollout, *, canary: Totals, stable: Totals, objective_s: float) -> Verdict:
    """The canary's verdict over one window of both variants' traffic."""
    ours, theirs = figures(canary), figures(stable)
    if not canary.requests:
        return Verdict(None, False, ours, theirs)
    compared = stable.requests >= rules.min_requests
    base_errors = (theirs["error_rate"] or 0.0) if compared else 0.0
    base_p99 = (theirs["p99_ms"] if compared else None) or objective_s * 1000
    reasons = []
    error_rate = ours["error_rate"] or 0.0
    if error_rate > base_errors + rules.max_error_rate_increase:
        reasons.append(
            f"error rate {error_rate:.1%} vs {base_errors:.1%} on stable "
            f"(allowed: +{rules.max_error_rate_increase:.1%})"
        )
    p99 = ours["p99_ms"]
    if (
        p99 is not None
        and p99 > base_p99 * (1 + rules.max_p99_increase)
        and p99 - base_p99 >= rules.min_p99_increase_ms
    ):
        reasons.append(
            f"p99 {p99:.1f}ms vs {base_p99:.1f}ms on stable "
            f"(allowed: +{rules.max_p99_increase:.0%})"
        )
    if not reasons:
        return Verdict(None, False, ours, theirs)
    failing = "; ".join(reasons) + f" over {canary.requests} requests in {rules.window_s:g}s"
    return Verdict(failing, canary.requests >= rules.min_requests, ours, theirs)


def parse_steps(text: str) -> list[float]:
    """`10,50,100` as percentages ending at 100; ValueError saying what is wrong."""
    try:
        steps = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--steps must be percentages separated by commas, not {text!r}") from None
    if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(steps):
        raise ValueError(f"--steps must rise from above 0 to 100, like 10,50,100 (not {text!r})")
    if steps[-1] != 100:
        steps.append(100.0)
    return steps
