"""Remote runs end to end on real sshd hosts: what a user sees locally, placement, retries,
reattaching, cancelling. (No GPU here: agents are given one slot each with --gpus 1.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    detached_run,
    mllib,
    popen_mllib,
    run_record,
    table_dump,
    wait_finished,
    workspace,
)
from sshlab import wait_for


def test_remote_run_is_recorded_like_a_local_one_with_identical_results(agents, tmp_path):
    """Parity: the minimal template gives the same metrics and model hash locally and remotely."""
    from mllib.scaffold import init_project

    root = tmp_path / "linear"
    init_project(root, "minimal")
    remote = mllib("model.py", "--train", "--evaluate", "--remote", "--epochs=20", cwd=root)
    assert remote.returncode == 0, remote.stderr
    assert "training on 200 rows" in remote.stdout  # streamed while attached
    local = mllib("train", "model.py", "--evaluate", "--epochs=20", cwd=root)
    assert local.returncode == 0, local.stderr

    import json

    runs = json.loads(mllib("runs", "list", "--json", cwd=root).stdout)
    remote_id, local_id = runs[1]["id"], runs[0]["id"]
    shown = {
        i: json.loads(mllib("runs", "show", i, "--json", cwd=root).stdout)
        for i in (remote_id, local_id)
    }
    r, here = shown[remote_id], shown[local_id]
    assert r["status"] == here["status"] == "succeeded"
    for key in ("params", "eval_metrics", "metrics", "metric_summary", "code_hash", "seed"):
        assert r[key] == here[key], key
    assert [a["sha256"] for a in r["artifacts"]] == [a["sha256"] for a in here["artifacts"]]
    assert r["model_version"] == 1 and here["model_version"] == 2
    assert r["runtime"] == "ssh"
    assert run_record(root, remote_id).host in agents
    log = Path(r["log_path"]).read_text()
    assert "training on 200 rows" in log and "learned y" in log
    # The model trained on the agent predicts here.
    out = mllib("predict", "model.py", "--run", remote_id, "--input", '{"x": 1.0}', cwd=root)
    assert out.returncode == 0 and '"y"' in out.stdout


def test_runs_spread_over_two_agents_and_a_third_waits(agents, project):
    ids = [detached_run(project, "--steps=20", "--sleep_s=0.25") for _ in range(3)]
    records = [wait_finished(project, i) for i in ids]
    assert [r.status for r in records] == ["succeeded"] * 3
    assert {r.host for r in records} == set(agents)
    logs = " ".join((project / ".mllib" / "runs" / i / "supervisor.log").read_text() for i in ids)
    assert "waiting for a free agent slot" in logs


@pytest.mark.parametrize("victim", ["worker", "supervisor"])
def test_killed_with_sigkill_on_the_agent_is_retried_on_the_other_agent(
    agents, project, lab, victim
):
    """The run's worker, or mllib's supervisor on the agent, is killed with SIGKILL mid-run."""
    run_id = detached_run(project, "--steps=30", "--sleep_s=0.1")
    hosts = {f"h{i}": h for i, h in enumerate(lab.hosts)}
    first = wait_for(lambda: run_record(project, run_id).host, what="placement")
    host = hosts[first]
    wait_for(lambda: host.worker_pids(), what="the remote worker")
    pid = (host.worker_pids() if victim == "worker" else host.supervisor_pids())[0]
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    record = wait_finished(project, run_id)
    assert record.status == "succeeded", record.error
    assert record.attempt == 2 and record.host != first
    from mllib.agents.retry import attempts

    ws = workspace(project)
    rows = attempts(ws.registry, run_id)
    assert [(a["agent"], a["status"], a["failure_class"]) for a in rows] == [
        (first, "failed", "system_error"),
        (record.host, "succeeded", None),
    ]
    assert ("SIGKILL" if victim == "worker" else "ended unexpectedly") in rows[0]["reason"]
    shown = mllib("runs", "show", run_id, "--json", cwd=project)
    import json

    data = json.loads(shown.stdout)
    assert [a["agent"] for a in data["attempts"]] == [first, record.host]
    text = mllib("runs", "show", run_id, cwd=project).stdout
    assert "Attempts" in text and f"1. {first} failed" in text
    assert data["metric_summary"]["loss"]["count"] == 30  # only the successful attempt's points
    log = Path(record.log_path).read_text()
    assert "attempt 2 of 2" in log and log.count("done") == 1


def test_user_error_is_not_retried_and_shows_the_traceback(agents, project):
    result = mllib("train", "model.py", "--remote", "--fail=true", cwd=project)
    assert result.returncode == 1
    assert "ValueError: the model failed on purpose" in result.stdout + result.stderr
    assert 'model.py", line' in result.stdout + result.stderr  # the user's frame
    assert "user_error" in result.stderr
    ws = workspace(project)
    [row] = ws.registry.query("SELECT id, attempt, failure_class FROM runs")
    assert row["attempt"] == 1 and row["failure_class"] == "user_error"


def test_connection_cut_mid_run_reattaches_with_complete_logs(agents, project, lab):
    proc = popen_mllib("train", "model.py", "--remote", "--steps=25", "--sleep_s=0.15", cwd=project)
    log = lambda: "".join(p.read_text() for p in (project / ".mllib" / "runs").glob("*/output.log"))  # noqa: E731
    wait_for(lambda: "step 3" in log(), what="the run to be under way", timeout=60)
    cut = sum(h.cut_connections() for h in lab.hosts)
    assert cut >= 1
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "reconnected" in err, err
    lines = [line for line in log().splitlines() if line.startswith("step ")]
    assert lines == [f"step {i}" for i in range(25)]
    assert [line for line in out.splitlines() if line.startswith("step ")] == lines


def test_runs_logs_follow_reattaches_from_another_terminal(agents, project):
    run_id = detached_run(project, "--steps=15", "--sleep_s=0.1")
    follow = mllib("runs", "logs", run_id, "--follow", cwd=project)
    assert follow.returncode == 0, follow.stderr
    assert [x for x in follow.stdout.splitlines() if x.startswith("step ")] == [
        f"step {i}" for i in range(15)
    ]
    assert "succeeded" in follow.stderr


def test_cancel_ends_every_process_on_the_agent(agents, project, lab):
    run_id = detached_run(project, "--steps=200", "--sleep_s=0.1")
    wait_for(lambda: any(h.worker_pids() for h in lab.hosts), what="the remote worker")
    result = mllib("runs", "cancel", run_id, cwd=project)
    assert result.returncode == 0, result.stderr
    assert run_record(project, run_id).status == "cancelled"

    def nothing_left():
        return all(not h.processes() for h in lab.hosts)

    wait_for(nothing_left, timeout=30, what="no process left on any agent")


def test_rerun_and_evaluate_of_a_remote_run_go_remote(agents, project):
    first = mllib("train", "model.py", "--agent", "h1", "--steps=3", cwd=project)
    assert first.returncode == 0, first.stderr
    ws = workspace(project)
    [run] = ws.registry.query("SELECT id, host FROM runs")
    assert run["host"] == "h1"
    evaluated = mllib("evaluate", "model.py", "--run", run["id"], "--remote", cwd=project)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "total=3" in evaluated.stderr


def test_remote_without_agents_is_a_clear_error(project, mllib_home):
    result = mllib("train", "model.py", "--remote", cwd=project)
    assert result.returncode == 2  # the user's set-up to complete, not a system failure
    assert "No agents are configured" in result.stderr
    assert "mllib agents add NAME --host HOST" in result.stderr and "[[agents]]" in result.stderr
    assert not (project / ".mllib" / "runs").exists() or not any(
        (project / ".mllib" / "runs").iterdir()
    )


def test_sync_twice_changes_nothing(agents, project):
    from mllib.agents.api import sync_agents

    run_id = detached_run(project, "--steps=50")
    wait_finished(project, run_id)
    ws = workspace(project)
    sync_agents(ws)  # catch up with the other tests' runs on the agents too
    before = table_dump(project, run_id)
    results = sync_agents(ws)
    assert all(r.get("runs") == 0 for r in results.values()), results
    assert table_dump(project, run_id) == before


def test_a_run_whose_local_follower_died_is_picked_up_again(agents, project):
    """The terminal that followed the run is gone (its process killed): `runs logs --follow`
    from a new terminal starts a new follower, and the run ends recorded with its whole log."""
    import os
    import signal

    from mllib.agents.supervise import lock_holder

    run_id = detached_run(project, "--steps=20", "--sleep_s=0.1")
    run_dir = project / ".mllib" / "runs" / run_id
    follower = wait_for(lambda: lock_holder(run_dir), what="the background follower")
    wait_for(lambda: run_record(project, run_id).status == "running", what="the run to start")
    os.kill(follower, signal.SIGKILL)
    follow = mllib("runs", "logs", run_id, "--follow", cwd=project)
    assert follow.returncode == 0, follow.stderr
    assert "succeeded" in follow.stderr
    record = run_record(project, run_id)
    assert record.status == "succeeded"
    log = Path(record.log_path).read_text()
    assert [x for x in log.splitlines() if x.startswith("step ")] == [
        f"step {i}" for i in range(20)
    ]
