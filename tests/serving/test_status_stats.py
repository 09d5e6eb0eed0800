"""`deploy status --json` gives the same `stats` keys whether or not the server answered."""

from __future__ import annotations

from mllib.serving.control.status import live_stats


def test_stats_of_a_server_that_did_not_answer_keep_their_shape() -> None:
    unreachable = live_stats(None, None, 1.0)
    assert unreachable["reachable"] is False
    documented = {"reachable", "rps", "p50_ms", "p99_ms", "error_rate", "requests_total", "window"}
    assert set(unreachable) == documented
    assert all(unreachable[key] is None for key in documented - {"reachable"})
