"""A remote start the agent cannot carry out is a failed attempt, retried like any system error.
The failures are real ones on the real host h0: its working-copy folder is a filesystem with no
space left (a full tmpfs), so writing the run's code there fails with ENOSPC; or its agent
program is cut off halfway (as by an interrupted copy), so it cannot start at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import mllib, run_record, workspace


@pytest.fixture
def h0_disk_full(lab, agents) -> Iterator[str]:
    host = lab.hosts[0]
    with host.full_disk(host.agent_root / "work"):
        yield agents[0]


@pytest.fixture
def h0_program_broken(lab, agents) -> Iterator[str]:
    root = lab.hosts[0].agent_root
    [pth] = (root / "venv").glob("lib/python3*/site-packages/mllib_agent.pth")
    server = Path(pth.read_text().strip()) / "mllib_agent" / "server.py"  # the installed one
    whole = server.read_bytes()
    server.write_bytes(whole[: len(whole) // 2])
    try:
        yield agents[0]
    finally:
        server.write_bytes(whole)


def test_a_start_that_fails_on_one_agent_is_retried_on_the_other(h0_disk_full, project) -> None:
    result = mllib("train", "model.py", "--remote", "--steps=3", cwd=project)

    assert result.returncode == 0, result.stderr
    [run] = json.loads(mllib("runs", "list", "--json", cwd=project).stdout)
    shown = json.loads(mllib("runs", "show", run["id"], "--json", cwd=project).stdout)
    first, second = shown["attempts"]
    assert (first["agent"], first["status"], first["failure_class"]) == (
        h0_disk_full,
        "failed",
        "system_error",
    )
    assert f"agent {h0_disk_full} could not start the run" in first["reason"]
    assert "No space left on device" in first["reason"]
    assert (second["agent"], second["status"]) == ("h1", "succeeded")
    assert shown["status"] == "succeeded" and shown["metrics"] == {"loss": 1 / 3}
    assert "attempt 2 of 2 on agent h1" in result.stdout  # said in the run's log, as it happened


def test_a_pinned_run_whose_start_keeps_failing_fails_as_a_system_error(
    h0_disk_full, project, lab
) -> None:
    result = mllib("train", "model.py", "--agent", h0_disk_full, cwd=project)

    assert result.returncode == 3, result.stderr
    ws = workspace(project)
    [row] = ws.registry.query("SELECT id FROM runs")
    record = run_record(project, row["id"])
    assert (record.status, record.failure_class, record.attempt) == ("failed", "system_error", 2)
    assert "No space left on device" in record.error and "(attempt 2 of 2)" in record.error
    from mllib.agents.retry import attempts

    assert [(a["agent"], a["status"]) for a in attempts(ws.registry, record.id)] == [
        (h0_disk_full, "failed"),
        (h0_disk_full, "failed"),
    ]
    root = lab.hosts[0].agent_root
    assert sorted(p.name for p in (root / "work").iterdir()) == ["filler"]  # no half-written copy
    assert not (root / "runs" / record.id).exists()
    assert lab.hosts[0].supervisor_pids() == []


def test_a_broken_agent_program_fails_the_attempts_of_a_run_pinned_to_it(
    h0_program_broken, project
) -> None:
    pinned = mllib("train", "model.py", "--agent", h0_program_broken, cwd=project)
    unpinned = mllib("train", "model.py", "--remote", "--steps=2", cwd=project)

    assert pinned.returncode == 3, pinned.stderr
    ws = workspace(project)
    from mllib.agents.retry import attempts

    first, second = (
        run_record(project, r["id"])
        for r in ws.registry.query("SELECT id FROM runs ORDER BY created_at")
    )
    assert (first.status, first.failure_class) == ("failed", "system_error")
    assert "its agent program exited with status 1" in first.error
    assert [a["status"] for a in attempts(ws.registry, first.id)] == ["failed", "failed"]
    # A run free to go anywhere skips the broken agent: it starts on the other one at once.
    assert unpinned.returncode == 0, unpinned.stderr
    assert [(a["agent"], a["status"]) for a in attempts(ws.registry, second.id)] == [
        ("h1", "succeeded")
    ]
