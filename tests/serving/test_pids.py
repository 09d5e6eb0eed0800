"""A deployment's processes by record (mllib/serving/pids.py), on real processes: a record whose
pid now names another process is never acted on, and a child that asked to die with its parent
does when the parent is killed -9. (Records of a real deployment: test_process_faults.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil

from mllib.runtime.processes import is_alive
from mllib.serving import pids
from mllib.serving.control import process
from tests.conftest import wait_for


def test_a_recorded_pid_that_names_another_process_now_is_never_stopped(tmp_path):
    folder = tmp_path / pids.PIDS_DIR
    other = subprocess.Popen(["sleep", "60"])
    try:
        pids.record(folder, other.pid, role="server", server="s1")
        (path,) = folder.glob("*.json")
        stale = json.loads(path.read_text())  # the same pid, started at another time: reused
        path.write_text(json.dumps({**stale, "ctime": stale["ctime"] - 5}))
        assert pids.alive(folder) == []
        process.stop_recorded(folder, grace_s=1)
        assert other.poll() is None, "a process that only shares a recorded pid was stopped"

        pids.record(folder, other.pid, role="server", server="s1")  # now it is ours
        assert [p.pid for p in pids.alive(folder, server="s1")] == [other.pid]
        assert pids.alive(folder, server="s2") == []
        stopped = process.stop_recorded(folder, grace_s=5)
        assert stopped.graceful and not is_alive(other.pid)
        assert list(folder.glob("*.json")) == []  # the records of ended processes are pruned
    finally:
        other.kill()
        other.wait()


def test_a_child_that_asked_to_die_with_its_parent_dies_when_the_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        """
        import signal, subprocess, sys, time
        from mllib.serving import pids
        child = subprocess.Popen(
            ["sleep", "60"], preexec_fn=lambda: pids.die_with_parent(signal.SIGKILL)
        )
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        with parent.stdout:
            child = int(parent.stdout.readline())
        assert is_alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not is_alive(child), timeout=10, what="the child to die with its parent")
    finally:
        parent.kill()
        parent.wait()
        if is_alive(child):
            psutil.Process(child).kill()
