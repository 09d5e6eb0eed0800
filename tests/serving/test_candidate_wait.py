"""`mllib deploy --canary` waits for its own candidate until the gateway routes to it: the
controller's state file, written a moment after it answers the order, may still show an earlier
rollout of the same version that was taken down; that earlier reason must not fail the new
deploy (seen under load in CI), and a candidate's process ready but not yet in the routes the
controller published is not enough (its share went to stable meanwhile). Then the judge's
warm-up of a canary (warmup.py), fed what the gateway counts of its replicas."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mllib.serving.control.fleet import write_state
from mllib.serving.control.rollout import _wait_candidate
from mllib.serving.control.warmup import Warmup
from mllib.serving.counters import Totals

EARLIER = {"label": "served v5", "server": "s3", "why": "p99 249.0ms vs 2.4ms on stable"}


def later(folder: Path, state: dict, after_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after_s), write_state(folder, state)))
    thread.start()
    return thread


def test_an_earlier_abort_of_the_same_version_does_not_fail_the_new_candidate(tmp_path):
    write_state(tmp_path, {"candidate": None, "last_abort": EARLIER})  # before the tick
    ready = {
        "candidate": {"mode": "canary", "variant": "canary"},
        "candidate_id": "s4",
        "last_abort": EARLIER,
        "processes": {"s4": [{"state": "ready"}]},
    }
    writer = later(tmp_path, ready, after_s=0.2)
    assert _wait_candidate(tmp_path, "s4", timeout_s=1, alive=lambda: True) == (
        "not ready after 1s ([deploy] ready_timeout_s)"
    )  # its process is ready, but the gateway does not route to it yet
    writer.join()
    writer = later(tmp_path, {**ready, "routed": {"canary": ["s4.0"]}}, after_s=0.3)
    assert _wait_candidate(tmp_path, "s4", timeout_s=10, alive=lambda: True) is None
    writer.join()


def test_the_new_candidates_own_abort_is_the_reason_given(tmp_path):
    write_state(tmp_path, {"candidate": None, "last_abort": EARLIER})
    own = {"label": "served v5", "server": "s4", "why": "error rate 40% vs 0%"}
    writer = later(tmp_path, {"candidate": None, "last_abort": own}, after_s=0.3)
    assert _wait_candidate(tmp_path, "s4", timeout_s=10, alive=lambda: True) == own["why"]
    writer.join()
    assert _wait_candidate(tmp_path, "s5", timeout_s=0.3, alive=lambda: False) == (
        "the deployment's controller exited"
    )


def totals(in_flight: int, requests: int) -> Totals:
    return Totals(in_flight, requests, 0, 0, 0, ())


def test_a_canary_is_warm_once_each_replica_answered_what_it_was_sent_before_its_first_answer():
    warmup = Warmup()
    # s2.0 took 3 requests, the first a cold start of seconds; s2.1 was sent nothing yet (the
    # least loaded is picked), and a slot's counts outlive an earlier replica (7 before).
    assert warmup.update(1.0, {"s2.0": totals(3, 7), "s2.1": totals(0, 0)}) is None
    # Its first answer: the 4 in flight then (sent before it) wait behind the cold start.
    assert warmup.update(4.0, {"s2.0": totals(4, 8), "s2.1": totals(0, 0)}) is None
    assert warmup.update(4.1, {"s2.0": totals(1, 11), "s2.1": totals(0, 0)}) is None  # 1 to go
    assert warmup.update(4.2, {"s2.0": totals(2, 12), "s2.1": totals(0, 0)}) == 4.2
    # A replica scaled up later warms up too: no verdict until it has.
    assert warmup.update(9.0, {"s2.0": totals(2, 50), "s2.1": totals(2, 0)}) is None
    assert warmup.update(9.5, {"s2.0": totals(2, 60), "s2.1": totals(1, 1)}) is None
    assert warmup.update(9.6, {"s2.0": totals(2, 70), "s2.1": totals(1, 3)}) == 9.6
