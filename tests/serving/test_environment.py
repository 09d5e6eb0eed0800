"""What a served model's secret params read: the shell's value beats .env.local's, in `mllib
serve` and in deployments, as in runs and `mllib predict` (a loaded model resolves its secrets
again where it is loaded)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Project, wait_for
from tests.serving.conftest import DevServer, cli

MODEL = """
import mllib


class Greeter:
    def __init__(self):
        self.greeting_token = mllib.Param("default", env="GREETING_TOKEN")  # secret by its name

    def train(self):
        pass

    def predict(self, request):
        return {"greeting": self.greeting_token}
"""

CONFIG = """
name = "greeter"
[deploy.staging]
port = 0
"""


def _greeting(url: str) -> str:
    return httpx.post(f"{url}/predict", content=b"{}", timeout=10).json()["greeting"]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def greeter(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    project.write("model.py", MODEL)
    project.write("mllib.toml", CONFIG)
    project.write(".env.local", "GREETING_TOKEN=from-the-env-file\n")
    assert project.mllib("train", "model.py", "--runtime=process").returncode == 0
    monkeypatch.setenv("GREETING_TOKEN", "from-the-shell")  # every command below runs under it
    return project


def test_the_shell_beats_the_env_file_in_predict_serve_and_deploy(greeter: Project):
    predicted = greeter.mllib("predict", "model.py", "--runtime=process", "--input", "{}")
    assert predicted.json() == {"greeting": "from-the-shell"}

    server = DevServer(greeter, "model.py", "--workers", "1")
    try:
        wait_for(lambda: _ready(server.url), timeout=90, what="the dev server")
        assert _greeting(server.url) == "from-the-shell"
    finally:
        server.stop()

    try:
        deployed = cli(greeter, "deploy", "greeter", "--env", "staging")
        assert deployed.returncode == 0, deployed.output
        status = cli(greeter, "deploy", "status", "--env", "staging", "--json").json()
        assert _greeting(status[0]["url"]) == "from-the-shell"
    finally:
        cli(greeter, "deploy", "stop", "--env", "staging")
