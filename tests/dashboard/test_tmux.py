"""End to end: the real `mllib dashboard` in tmux, typed into and read back as a person would,
while a real run (process runtime) logs a metric. Each newly logged value must be on screen within
2 s of the model logging it: events batch for up to 1 s in the worker, the supervisor stores them
every 0.2 s, and the dashboard polls every 0.25 s. (A deadline in an end-to-end check, not a
benchmark: the speed goals are in benchmarks/dashboard.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

BEACON = """
import time
from pathlib import Path

import mllib


class Beacon:
    def __init__(self):
        self.seconds = mllib.Param(90.0)

    def train(self):
        log = Path("beacons.txt")
        start = time.time()
        i = 0
        while time.time() - start < self.seconds and not Path("stop").exists():
            i += 1
            mllib.log_metric("beacon", i)
            with log.open("a") as handle:  # when the value was logged, for the test to compare
                handle.write(f"{i} {time.time()}\\n")
            time.sleep(0.3)

    def predict(self, request):
        return 0
"""
DEADLINE_S = 2.0


@pytest.fixture
def tmux():
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and tmux is not installed (scripts/test.sh installs it)")
        pytest.skip("tmux is not installed: apt-get install tmux (with CI=true this fails instead)")
    server = f"mllib-test-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", server, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    yield run
    subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=10)


def _wait_for(screen, predicate, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = screen()
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not appear within {timeout} s; the screen:\n{text}")
        time.sleep(0.05)


def _alive(tmux) -> bool:
    try:
        tmux("has-session", "-t", "dash")
    except subprocess.CalledProcessError:
        return False
    return True


def _shown_value(text: str, run_id: str) -> int | None:
    """The beacon value on the run's row (the only whole number on it)."""
    for line in text.splitlines():
        if run_id in line:
            numbers = re.findall(r"(?<![\w.])(\d+)(?![\w.])", line)
            return max(map(int, numbers)) if numbers else None
    return None


def test_the_dashboard_shows_each_new_metric_value_within_two_seconds(project, tmux):
    project.write("beacon.py", BEACON)
    started = project.mllib("train", "beacon.py", "--runtime", "process", "--detach")
    assert started.returncode == 0, started.output
    run_id = started.stdout.strip().splitlines()[-1]
    beacons = project.root / "beacons.txt"
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    command = f"{sys.executable} -m mllib dashboard --metric beacon"
    try:
        tmux("new-session", "-d", "-s", "dash", "-x", "120", "-y", "30", "-c", str(project.root),
             *[f"-e{k}={v}" for k, v in env.items() if k in ("PATH", "HOME", "MLLIB_HOME", "TZ")],
             command)  # fmt: skip

        def screen() -> str:
            return tmux("capture-pane", "-p", "-t", "dash")

        _wait_for(screen, lambda t: run_id in t and "running" in t, 60, f"run {run_id} running")
        for _ in range(3):
            # a value logged just now: the next line the model writes
            seen = len(beacons.read_text().splitlines()) if beacons.exists() else 0
            deadline = time.monotonic() + 10
            while len(lines := beacons.read_text().splitlines()) <= seen:
                assert time.monotonic() < deadline, "the model stopped logging"
                time.sleep(0.01)
            value, logged_at = lines[seen].split()
            left = float(logged_at) + DEADLINE_S - time.time()
            _wait_for(
                screen,
                lambda t, v=int(value): (_shown_value(t, run_id) or 0) >= v,
                max(left, 0.0),
                f"beacon value {value} (logged at {logged_at})",
            )

        # Open the run (its curve's title names the newest value), then cancel it from there.
        tmux("send-keys", "-t", "dash", "Enter")
        _wait_for(screen, lambda t: f"Run {run_id}" in t and "beacon = " in t, 10, "the run screen")
        tmux("send-keys", "-t", "dash", "x")
        _wait_for(screen, lambda t: f"Cancel run {run_id}?" in t, 10, "the confirmation")
        tmux("send-keys", "-t", "dash", "y")
        _wait_for(screen, lambda t: "cancelled" in t, 40, "the run cancelled")
        assert project.show(run_id)["status"] == "cancelled"
        tmux("send-keys", "-t", "dash", "q")
        deadline = time.monotonic() + 10
        while _alive(tmux):  # the session ends with the dashboard
            assert time.monotonic() < deadline, "the dashboard did not quit on q"
            time.sleep(0.05)
    finally:
        (project.root / "stop").touch()
        project.mllib("runs", "cancel", run_id)
