"""Ctrl-C and `mllib runs cancel` end the run's whole process tree and record it as cancelled."""

import json
import os
import signal
import subprocess
import sys

import psutil

from tests.conftest import Project, model_source, wait_for


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start_sleeper(project: Project, *extra: str) -> subprocess.Popen:
    """The process runtime's tree (tests/contract covers cancelling in every runtime)."""
    project.write("model.py", model_source("behaviours"))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mllib",
            "train",
            "model.py",
            "--behaviour=sleep",
            "--runtime=process",
            *extra,
        ],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pids(project: Project) -> dict:
    marker = project.root / "started.json"
    wait_for(marker.exists, what="the model to start")
    return json.loads(marker.read_text())


def test_ctrl_c_cancels_and_leaves_no_process(project: Project):
    cli = _start_sleeper(project)
    pids = _pids(project)
    cli.send_signal(signal.SIGINT)
    stdout, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 130, stderr
    for name, pid in pids.items():
        assert wait_for(lambda pid=pid: _gone(pid), timeout=15, what=f"{name} to exit")
    run = project.last_run()
    assert run["status"] == "cancelled" and run["failure_class"] is None
    assert "tick 0" in stdout


def test_detach_then_follow_then_cancel(project: Project):
    started = _start_sleeper(project, "--detach")
    stdout, stderr = started.communicate(timeout=60)
    assert started.returncode == 0, stderr
    run_id = stdout.strip().splitlines()[-1]
    assert f"mllib runs logs {run_id} --follow" in stderr
    pids = _pids(project)
    wait_for(
        lambda: "tick 1" in project.mllib("runs", "logs", run_id).stdout, what="output in the log"
    )
    assert project.show(run_id)["status"] == "running"

    follower = subprocess.Popen(
        [sys.executable, "-m", "mllib", "runs", "logs", run_id, "--follow"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    result = project.mllib("runs", "cancel", run_id[:6])
    assert result.returncode == 0 and "cancelled" in result.stderr
    followed, follow_err = follower.communicate(timeout=30)
    assert (
        "tick 0" in followed and "cancelled" in follow_err
    )  # the follower saw the output and the end
    for name, pid in pids.items():
        assert wait_for(lambda pid=pid: _gone(pid), timeout=15, what=f"{name} to exit")
    assert project.show(run_id)["status"] == "cancelled"


def test_a_run_whose_supervisor_was_killed_is_failed_and_its_worker_ended(project: Project):
    cli = _start_sleeper(project)
    pids = _pids(project)
    os.kill(cli.pid, signal.SIGKILL)  # the terminal vanished without any cleanup
    cli.communicate(timeout=10)
    run = project.last_run()  # listing runs notices the dead supervisor
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "ended unexpectedly" in run["error"]
    assert wait_for(
        lambda: _gone(pids["worker"]), timeout=15, what="the orphaned worker to be ended"
    )
