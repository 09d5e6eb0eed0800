"""A deployment whose replicas run on the lab's agents, read as a user would: `deploy status
--json`, the server processes on each host, and a client posting through the gateway."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
from helpers import mllib

SERVED = """
import time

import mllib


class Steps:
    def __init__(self):
        self.bias = mllib.Param(1.0)
        self.slow_s = mllib.Param(0.0)

    def train(self):
        print("trained", flush=True)

    def evaluate(self):
        return {"bias": self.bias}

    def predict(self, request):
        time.sleep(self.slow_s + float(request.get("sleep", 0)))  # a slow version, or request
        return {"y": request["x"] + self.bias}
"""


def prepare(lab, project: Path, config: str, *versions: tuple[str, ...], model: str = "") -> None:
    """The lab's hosts install packages from this machine's sources; the project gets `model`
    (else its own) and `config` after its mllib.toml, and is trained once per params in
    `versions` (once with none when none are given)."""
    for host in lab.hosts:
        host.use_package_sources()
    if model:
        (project / "model.py").write_text(model)
    with open(project / "mllib.toml", "a") as handle:
        handle.write(config)
    for params in versions or ((),):
        trained = mllib("train", "model.py", *params, cwd=project, timeout=300)
        assert trained.returncode == 0, trained.stdout + trained.stderr


def deploy(project: Path, *args: str) -> None:
    """`mllib deploy ARGS --env staging`, which must succeed."""
    result = mllib("deploy", *args, "--env", "staging", cwd=project, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def status(project: Path, env: str = "staging") -> dict:
    result = mllib("deploy", "status", "--env", env, "--json", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)
    return row


def on_agents(row: dict) -> dict[str, str]:
    """Ready replicas on agents: replica id -> agent."""
    return {
        r["id"]: r["host"]
        for r in row["replicas"]
        if r["host"] != "local" and r["state"] == "ready"
    }


def servers(host) -> list:
    """The serving processes running on a lab host."""
    return [p for p in host.processes() if "mllib.serving.server" in (p.info["cmdline"] or [])]


def history(project: Path, env: str = "staging") -> list[dict]:
    result = mllib("deploy", "history", "--env", env, "--json", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


class Traffic:
    """Clients posting `body` through the gateway (with a key when given) until stopped, each
    on its own connection, `pause_s` between requests; every status kept."""

    def __init__(
        self, url: str, key: str | None = None, *, clients: int = 1, body: dict | None = None,
        pause_s: float = 0.0,
    ) -> None:  # fmt: skip
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.body = body or {"x": 1}
        self.pause_s = pause_s
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30, headers=self.headers) as client:
            while not self.done.is_set():
                try:
                    reply = client.post(f"{self.url}/predict", json=self.body)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses.append(reply.status_code)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def failed(self) -> list[int]:
        return [s for s in self.statuses if not 200 <= s < 300]

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()
