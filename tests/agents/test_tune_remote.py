"""`mllib tune --remote`: trials are remote runs placed on the lab's agents like any other."""

from __future__ import annotations

import json

from helpers import mllib, run_record


def test_a_study_runs_its_trials_on_agents(agents, project):
    result = mllib(
        "tune", "model.py", "--remote", "--param", "steps=int:2:6", "--metric", "total",
        "--trials", "3", "--parallel", "2", "--sampler", "random", "--name", "remote",
        "--sleep_s=0.1", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "objective total: a key of evaluate()'s dict" in result.stderr
    data = json.loads(mllib("tune", "show", "remote", "--json").stdout)
    assert data["direction"] == "maximize" and data["counts"]["complete"] == 3
    hosts = set()
    for trial in data["trials"]:
        record = run_record(project, trial["run_id"])
        assert record.runtime == "ssh" and record.status == "succeeded"
        hosts.add(record.host)
        steps = trial["params"]["steps"]
        assert trial["value"] == steps * (steps - 1) / 2  # evaluate()'s total, synced back
    assert hosts <= set(agents) and hosts
    assert data["best_value"] == max(t["value"] for t in data["trials"])
    # --agent NAME: every trial on that agent, 2 at once on its one slot.
    pinned = mllib(
        "tune", "model.py", "--agent", agents[1], "--param", "steps=int:2:6", "--metric",
        "total", "--trials", "2", "--parallel", "2", "--sampler", "random", "--name", "pinned",
        "--sleep_s=0.1", timeout=300,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    data = json.loads(mllib("tune", "show", "pinned", "--json").stdout)
    assert data["counts"]["complete"] == 2 and data["launch"]["agent"] == agents[1]
    for trial in data["trials"]:
        record = run_record(project, trial["run_id"])
        assert record.host == agents[1] and record.status == "succeeded"
