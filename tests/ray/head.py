"""A real Ray head on loopback for the test session: `ray start --head --block`, bounded to 2
CPUs and a 100 MB object store, every port its own (other engineers' heads may run beside it),
its own temp folder, and the test session's token (never ~/.ray/auth_token). Stopped by
SIGTERM to the process that started it, then whatever of its tree is left, by pid.

`hide`: the head and everything it starts (its jobs' workers) run in their own mount namespace
where those folders are empty (a tmpfs over each), as on a node that does not share this
machine's filesystem.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mllib.protocol.numeric_env import PREFIXES

# Every head of this test session takes the same token: Ray's client in this process keeps the
# first token it reads (its token_loader caches it), so a second head with its own would refuse
# this process's requests.
SESSION_TOKEN = secrets.token_hex(32)
START_TIMEOUT_S = 180.0  # a cold start on a loaded 2-core machine took 54 s


def missing_prerequisite() -> str | None:
    """Why a head cannot start here, or None."""
    if shutil.which("ray", path=str(Path(sys.executable).parent)) is None:
        return "Ray is not installed in this venv (scripts/test.sh installs mllib[ray])"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class RayHead:
    """A running head: its Jobs API address and the variables a client needs."""

    process: subprocess.Popen
    address: str
    temp_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    log: Any = None  # the head's output file, closed when it stops
    ports: list[int] = field(default_factory=list)
    hidden: Path | None = None  # a folder it and its jobs see empty (tests/conftest.py)

    @classmethod
    def start(
        cls,
        *,
        hide: tuple[Path, ...] = (),
        token: str | None = None,
        ports: list[int] | None = None,
    ) -> RayHead:
        """`token`: the cluster's (SESSION_TOKEN unless given); `ports`: a stopped head's, to
        start it again."""
        temp_dir = Path(tempfile.mkdtemp(prefix="mllib-ray-", dir="/tmp"))  # short: unix sockets
        ports = ports or _free_ports(7)
        gcs, dashboard, client, agent_listen, agent_grpc, metrics, env_agent = ports
        env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token or SESSION_TOKEN,
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        command = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            "--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000",
            f"--port={gcs}", f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_listen}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={env_agent}", f"--temp-dir={temp_dir}",
            "--include-dashboard=true", "--disable-usage-stats",
        ]  # fmt: skip
        if hide:
            mounts = "".join(f"mount -t tmpfs tmpfs {shlex.quote(str(p))} && " for p in hide)
            command = ["unshare", "--mount", "--propagation", "private", "--",
                       "sh", "-c", f'{mounts}exec "$@"', "sh", *command]  # fmt: skip
        log = open(temp_dir / "head.log", "wb")  # noqa: SIM115 - the head's, closed with it
        # The head's environment is its jobs' (below theirs): none of this process's BLAS and
        # thread variables, which a test may have set for itself alone.
        base = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
        process = subprocess.Popen(
            command,
            env={**base, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        head = cls(process, f"http://127.0.0.1:{dashboard}", temp_dir, env, log, ports)
        head._wait_ready()
        return head

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.log_tail()}")
            try:
                request = urllib.request.Request(
                    f"{self.address}/api/version",
                    headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
                )
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200 and self._jobs_ready():
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not answer in {START_TIMEOUT_S:.0f} s")

    def _jobs_ready(self) -> bool:
        """The head's job agent answers (jobs submitted earlier fail with 503s)."""
        import urllib.request

        request = urllib.request.Request(
            f"{self.address}/api/jobs/",
            headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill_gcs(self) -> None:
        """SIGKILL the head's GCS server, as a crashed or lost head machine would lose it."""
        for proc in self.processes():
            if "gcs_server" in proc.name():
                proc.kill()
                return
        raise RuntimeError("the head has no gcs_server process")

    def restarted(self) -> RayHead:
        """What is left of this head stopped, and a fresh head started on its ports (a head
        brought back: it knows none of the jobs of the one before)."""
        self.stop()
        return RayHead.start(token=self.env["RAY_AUTH_TOKEN"], ports=self.ports)

    def log_tail(self) -> str:
        try:
            return (self.temp_dir / "head.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_mb(self) -> float:
        """The resident memory of the head's whole process tree, in MB."""
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total / 1e6

    def stop(self) -> None:
        """SIGTERM the head (it ends what it started), then SIGKILL what is left of its tree."""
        tree = self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for proc in tree + self._strays():
            try:
                proc.kill()
            except psutil.Error:
                pass
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _strays(self) -> list[psutil.Process]:
        """Processes of this head that left its tree (Ray's watchers start their own sessions)."""
        mark = str(self.temp_dir)
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if any(mark in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
        return found
