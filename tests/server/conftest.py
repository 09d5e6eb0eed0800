"""A real team server on loopback for the tests of this folder: `mllib server init`, users added
with the real CLI, `mllib server start` as a subprocess, reached with real HTTP clients and the
real `mllib` command. One server per database (SQLite, PostgreSQL) per module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TeamServer:
    home: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str] | None = None) -> None:
        log = open(self.home / "test-server.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mllib", "server", "start", "--dir", str(self.home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start:\n{self.log()}")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.home / "test-server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=30
        )

    def add_user(self, name: str, *options: str) -> str:
        result = run_cli(
            ["server", "users", "add", name, "--dir", str(self.home), *options], cwd=self.home
        )
        assert result.returncode == 0, result.output
        self.tokens[name] = result.stdout.strip()
        return self.tokens[name]


def upload_code_tree(server: TeamServer, user: str = "ana") -> str:
    """Upload a small code tree, as a client does before submitting."""
    from mllib.store import LocalBlobStore
    from mllib.store.trees import put_tree, read_tree

    folder = server.home.parent / "code"
    folder.mkdir(exist_ok=True)
    (folder / "model.py").write_text("class M:\n    def train(self):\n        pass\n")
    store = LocalBlobStore(server.home.parent / "client-store")
    tree = put_tree(store, folder)
    with server.client(user) as http:
        shas = [*(f.sha256 for f in read_tree(store, tree.sha256).files), tree.sha256]
        for sha in http.post("/api/v1/blobs/missing", json={"shas": shas}).json()["missing"]:
            http.put(f"/api/v1/blobs/{sha}", content=store.get_bytes(sha)).raise_for_status()
    return tree.sha256


def submission_body(code_tree: str, **fields: object) -> dict[str, object]:
    """What `mllib train --remote` posts for a run of a small model (a new run id and key)."""
    run_id = uuid.uuid4().hex[:16]
    return {
        "run_id": run_id,
        "idempotency_key": f"key-{run_id}",
        "model": "m",
        "action": "train",
        "model_class": "M",
        "model_file": "model.py",
        "code_tree": code_tree,
        "spec": {"actions": ["train"], "model_file": "model.py", "model_class": "M"},
        "params": {"lr": 0.5},
        **fields,
    }


def make_server(root: Path, database: str, *init: str) -> TeamServer:
    home = root / "server-home"
    server = TeamServer(home, free_port())
    args = ["server", "init", "--dir", str(home), "--port", str(server.port), *init]
    if database.startswith("postgresql"):
        args += ["--database", database]
    result = run_cli(args, cwd=root)
    assert result.returncode == 0, result.output
    return server


def with_a_silent_agent(root: Path, **fields: str) -> tuple[TeamServer, str]:
    """A running server (SQLite), users ana (admin) and bo, and one agent, `far` (2 GPUs, and
    `fields` such as user and key), declared in the server's mllib.toml on a loopback port where
    nothing listens: runs submitted stay queued. Returns it and the agent's `host:port`."""
    server = make_server(root, "sqlite")
    port = free_port()
    extra = "".join(f'{name} = "{value}"\n' for name, value in fields.items())
    (server.home / "mllib.toml").write_text(
        f'[[agents]]\nname = "far"\nhost = "127.0.0.1"\nport = {port}\ngpus = 2\n{extra}'
    )
    server.add_user("ana", "--admin")
    server.add_user("bo")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def team_server(request, tmp_path_factory):
    """A running server with users ana (admin), bo, and cy (max 2 queued)."""
    root = tmp_path_factory.mktemp("team")
    database = "sqlite"
    if request.param == "postgresql":
        database = request.getfixturevalue("pg_cluster").new_database()
    server = make_server(root, database)
    server.add_user("ana", "--admin")
    server.add_user("bo")
    server.add_user("cy", "--max-queued", "2")
    server.start()
    yield server
    server.stop()
