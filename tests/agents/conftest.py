"""Fixtures for the agent tests: real sshd hosts on loopback (see sshlab.py), agents added to a
per-test MLLIB_HOME, and a project whose model can run slowly, fail, or log many metrics."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshlab import Lab, missing_prerequisite

MODEL = """
import time

import mllib


class Steps:
    def __init__(self):
        self.steps = mllib.Param(5)
        self.sleep_s = mllib.Param(0.0)
        self.fail = mllib.Param(False)
        self.total = 0.0

    def train(self):
        for i in range(self.steps):
            print(f"step {i}", flush=True)
            mllib.log_metric("loss", 1.0 / (i + 1), step=i)
            self.total += i
            time.sleep(self.sleep_s)
        if self.fail:
            raise ValueError("the model failed on purpose")
        print("done", flush=True)

    def evaluate(self):
        return {"total": self.total}

    def predict(self, request):
        return self.total
"""


def unavailable(reason: str) -> None:
    """Fail under CI=true, where real SSH hosts are required; skip elsewhere, saying why."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    reason = missing_prerequisite()
    if reason:
        unavailable(reason)
    lab = Lab.create(2)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def mllib_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mllib-home"
    monkeypatch.setenv("MLLIB_HOME", str(home))
    return home


@pytest.fixture
def agents(lab: Lab, mllib_home: Path) -> Iterator[list[str]]:
    """Both lab hosts added as agents h0 and h1 (one slot each); leftovers ended afterwards."""
    from mllib.agents.api import add_agent

    names = []
    for i, host in enumerate(lab.hosts):
        if host.sshd_pid is None:
            host.start()
        add_agent(f"h{i}", **lab.spec_args(host), gpus=1, trust_host_key=True)
        names.append(f"h{i}")
    yield names
    for host in lab.hosts:
        for proc in host.processes():
            if "mllib" in " ".join(proc.info["cmdline"] or []):
                _kill(proc.pid)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "model.py").write_text(MODEL)
    (root / "mllib.toml").write_text(
        textwrap.dedent(
            """
            name = "steps"
            [retry]
            max_attempts = 2
            backoff_s = 0.2
            unreachable_after_s = 30
            """
        )
    )
    monkeypatch.chdir(root)
    yield root
    _end_local_supervisors(root)


@pytest.fixture
def staging_stopped(project: Path) -> Iterator[None]:
    """`mllib deploy stop --env staging` after the test, failed or not: a deployment left
    running would go on replacing its replicas on the lab's hosts in the next tests."""
    from helpers import mllib

    yield
    mllib("deploy", "stop", "--env", "staging", cwd=project, timeout=120)


def _end_local_supervisors(root: Path) -> None:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])  # python -m ...control.supervisor ROOT/.../spec
        if "mllib.serving.control.supervisor" in cmd and str(root) in cmd:
            _kill(proc.pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
