"""`mllib deploy --canary` waits for its own candidate: the controller's state file, written a
moment after it answers the order, may still show an earlier rollout of the same version that
was taken down; that earlier reason must not fail the new deploy (seen under load in CI)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mllib.serving.control.fleet import write_state
from mllib.serving.control.rollout import _wait_candidate

EARLIER = {"label": "served v5", "server": "s3", "why": "p99 249.0ms vs 2.4ms on stable"}


def later(folder: Path, state: dict, after_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after_s), write_state(folder, state)))
    thread.start()
    return thread


def test_an_earlier_abort_of_the_same_version_does_not_fail_the_new_candidate(tmp_path):
    write_state(tmp_path, {"candidate": None, "last_abort": EARLIER})  # before the tick
    ready = {
        "candidate": {"mode": "canary"},
        "candidate_id": "s4",
        "last_abort": EARLIER,
        "processes": {"s4": [{"state": "ready"}]},
    }
    writer = later(tmp_path, ready, after_s=0.5)
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
