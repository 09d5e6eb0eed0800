"""Monitoring fixtures: Debian's prometheus and promtool (scripts/test.sh installs them), and a
real Prometheus started on a loopback port for a test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _missing(what: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {what} is not installed (scripts/test.sh installs it)")
    pytest.skip(f"{what} is not installed: bash scripts/test.sh installs it (CI fails instead)")


def _installed(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} (Debian's prometheus package)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _installed("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _installed("prometheus")


@pytest.fixture(scope="session")
def node_exporter_bin() -> str:
    return _installed("prometheus-node-exporter")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """A Prometheus server of our own, reached over its HTTP API."""

    def __init__(self, binary: str, config: Path, data: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = data.parent / "prometheus.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--web.enable-lifecycle",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"Prometheus did not start:\n{self.log.read_text()[-3000:]}")

    def query(self, promql: str) -> dict:
        """/api/v1/query's answer (raises with Prometheus' error for a query it refuses)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = reply.json()
        if body.get("status") != "success":
            raise AssertionError(f"{promql!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def active_targets(self) -> list[dict]:
        reply = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=10)
        return reply.json()["data"]["activeTargets"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


@pytest.fixture
def start_prometheus(prometheus_bin: str, tmp_path: Path) -> Iterator:
    started: list[Prometheus] = []

    def start(config: Path) -> Prometheus:
        server = Prometheus(prometheus_bin, config, tmp_path / "prometheus-data")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
