"""Serving fixtures: a project with trained versions of tests/models/served.py, and the check that
no server process outlives the tests."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Project, run_cli

MARKER = "MLLIB_TEST_SERVING"

CONFIG = """
name = "served"
model = "model.py:Served"

[serve]
workers = 2
api_servers = 2
drain_s = 1.0
timeout_s = 4.0

[deploy]
ready_timeout_s = 90
stop_grace_s = 15
budget_burst = 10.0

[deploy.prod]
workers = 2
api_servers = 2

[keys]
refresh_s = 0.2

# Passing is about errors here, not throughput: a loaded 2-core machine makes few requests.
[loadtest]
input = '{"x": [1, 2, 3]}'
pass_min_requests = 1
pass_max_p99_ms = 60000
"""


def _leftovers(tag: str) -> list:
    """Processes carrying the marker, but this one and its multiprocessing resource tracker (which
    tests that build queues and locks in-process start, and which ends with this process)."""
    from multiprocessing import resource_tracker

    import psutil

    ours = {os.getpid(), resource_tracker._resource_tracker._pid}
    found = []
    for proc in psutil.process_iter():
        try:
            mine = proc.pid not in ours and proc.environ().get(MARKER) == tag
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind() -> Iterator[None]:
    """Every process the serving tests start carries a marker; none may be left at the end."""
    tag = secrets.token_hex(8)
    os.environ[MARKER] = tag
    yield
    import psutil

    deadline = time.monotonic() + 20
    left = _leftovers(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _leftovers(tag)
    running = []
    for proc in left:
        try:
            running.append(proc.cmdline())  # a zombie by now has ended: not left running
            proc.kill()
        except psutil.Error:
            pass
    assert not running, f"server processes left running after the tests: {running}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(project: Project, *params: str) -> str:
    """Train one version; returns the run id."""
    result = project.mllib("train", "model.py", *params)
    assert result.returncode == 0, result.output
    return project.mllib("runs", "list", "--json", "--limit", "1").json()[0]["id"]


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A project with trained versions of served.py: v1 bias 0, v2 bias 1, v3 cannot be loaded,
    v4 takes 2 s to load. Trained once; each test module works on its own copy."""
    root = tmp_path_factory.mktemp("served-template") / "proj"
    root.mkdir()
    project = Project(root)
    project.write("model.py", (ROOT / "tests" / "models" / "served.py").read_text())
    project.write("mllib.toml", CONFIG)
    runs = {
        "v1": train(project),
        "v2": train(project, "--bias=1"),
        "v3": train(project, "--broken=true"),
        "v4": train(project, "--load_delay=2"),
    }
    return root, runs


def copy_project(trained_template, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A copy of the trained project (registry, store and all) of one's own."""
    source, runs = trained_template
    root = tmp_path_factory.mktemp("served") / "proj"
    shutil.copytree(source, root)
    project = Project(root)
    project.runs = runs
    return project


@pytest.fixture(scope="module")
def served_project(trained_template, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """This module's own copy of the trained project."""
    return copy_project(trained_template, tmp_path_factory)


class DevServer:
    """`mllib serve` running as a real subprocess on a free loopback port."""

    def __init__(self, project: Project, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project.root / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mllib", "serve", *args, "--port", str(self.port)],
                cwd=project.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int | None = None) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cli(project: Project, *args: str, **kwargs) -> object:
    return run_cli(list(args), project.root, **kwargs)
