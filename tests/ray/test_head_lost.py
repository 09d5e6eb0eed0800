"""A Ray head lost in the middle of a run, on a throwaway head of this test's own (never the
session's, which other tests share): its GCS server killed with SIGKILL, as a crashed head
machine would lose it, then a fresh head started on the same ports (it knows none of the old
head's jobs), as an operator would bring it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.workspace import Workspace
from tests.conftest import running_head, wait_for
from tests.contract.harness import RuntimeUnderTest, make_project, ray_leftovers
from tests.ray.test_ray import _napping_run


def _attempts(run_dir: str) -> list[dict[str, Any]]:
    try:
        found: list[dict[str, Any]] = json.loads((Path(run_dir) / "attempts.json").read_text())
    except (OSError, ValueError):
        return []
    return found


@pytest.mark.timeout(900)
def test_a_run_whose_head_is_lost_fails_as_a_system_error_and_is_retried_once_it_is_back(
    tmp_path: Path,
) -> None:
    with running_head() as head:
        project = make_project(
            tmp_path,
            RuntimeUnderTest(
                "ray",
                lambda run: [],
                tables={
                    "ray": {"address": head.address, "lost_after_s": 2.0},
                    "retry": {"max_attempts": 8, "backoff_s": 2.0},
                },
            ),
        )
        run_id, run_dir, _ = _napping_run(project)
        registry = Workspace.find(project.root).registry
        try:
            head.kill_gcs()

            # attempt 1 is lost, and attempt 2 finds no head to take its job: both said in the log
            wait_for(lambda: len(_attempts(run_dir)) >= 2 and _attempts(run_dir)[1]["status"] == "failed",
                     timeout=240, what="attempt 2 to find no head")  # fmt: skip
            # retried, not failed: running, or queued while its next attempt's job waits
            assert get_run(registry, run_id).status in ("running", "queued")
            back = head.restarted()
            try:
                wait_for(lambda: get_run(registry, run_id).finished, timeout=400, what="the run")
                run = get_run(registry, run_id)
                assert run.status == "succeeded", run.error
                assert ray_leftovers(back, run) == []
            finally:
                back.stop()
        finally:  # a failure above must not leave the run's supervisor retrying after the test
            if not get_run(registry, run_id).finished:
                project.cli("runs", "cancel", run_id)

    attempts = views.show(Workspace.find(project.root), run_id)["attempts"]
    lost, unstarted, last = attempts[0], attempts[1], attempts[-1]
    assert (lost["status"], lost["failure_class"]) == ("failed", "system_error")
    assert f"was lost: the head at {head.address} " in lost["reason"]
    assert unstarted["agent"] == "(no job)" and unstarted["failure_class"] == "system_error"
    assert "the ray runtime could not start:" in unstarted["reason"]
    assert (last["status"], last["attempt"]) == ("succeeded", len(attempts))
    shown = project.cli("runs", "show", run_id)
    assert "Attempts" in shown.stdout and "1. mllib-" in shown.stdout and "was lost" in shown.stdout
    log = (Path(run_dir) / "output.log").read_text()
    assert "attempt 1 of 8 failed (the Ray job" in log and "attempt 2 of 8 failed" in log
