"""Serving from the model's own environment: a model whose predict imports a package mllib's
environment lacks is served, by `mllib serve` and by deployments, from a venv of its serving
step's dependencies (with LitServe and mllib in it), built once and reused; a model mllib's
environment can serve is served by mllib's own python, with nothing built.

The package is a wheel built here and offered on a find-links page on loopback, so no package
index is needed (uv installs the rest from the host's sources, as every venv build does)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mllib.runtime.venvs import META_FILE, list_envs
from tests.conftest import Project, wait_for
from tests.serving.conftest import DevServer, cli

PACKAGE = "mllib_shout_test"  # in no index, and not in mllib's venv

MODEL = """
import mllib


class Shouter:
    def __init__(self):
        self.suffix = mllib.Param("!")

    def train(self):
        from mllib_shout_test import shout

        mllib.log_metric("length", float(len(shout("abc"))))

    def predict(self, request):
        from mllib_shout_test import shout

        return {"said": shout(request["text"]) + self.suffix}
"""

PLAIN = """
import mllib


class Plain:
    def __init__(self):
        self.bias = mllib.Param(1)

    def train(self):
        pass

    def predict(self, request):
        return {"y": request["x"] + self.bias}
"""


def _wheel(folder: Path) -> Path:
    """A pure-Python wheel of PACKAGE 1.0: `shout(text)` is the text in capitals."""
    info = f"{PACKAGE}-1.0.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": b"def shout(text):\n    return text.upper()\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = folder / f"{PACKAGE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


@pytest.fixture(scope="module")
def find_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a find-links page on loopback offering the package's wheel."""
    from mllib.runtime.wheels import serve_wheels

    with serve_wheels([_wheel(tmp_path_factory.mktemp("wheels"))]) as url:
        assert url is not None
        yield url


def _predict(url: str, body: dict) -> dict:
    return httpx.post(f"{url}/predict", json=body, timeout=30).json()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_a_model_needing_a_package_mllib_lacks_serves_from_its_own_venv(
    project: Project, find_links: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "fresh-cache"  # this test watches builds: not the session's cache
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    project.write("model.py", MODEL)
    project.write(
        "requirements.txt", f"--find-links {find_links}\n{PACKAGE.replace('_', '-')}==1.0\n"
    )
    project.write("mllib.toml", 'name = "shouter"\n[deploy.staging]\nport = 0\n')
    trained = project.mllib("train", "model.py", "--runtime", "venv")
    assert trained.returncode == 0, trained.output
    with pytest.raises(ImportError):
        __import__(PACKAGE)  # mllib's own environment cannot serve it

    server = DevServer(project, "model.py", "--workers", "1")
    try:
        wait_for(lambda: _ready(server.url), timeout=240, what="the dev server")
        assert _predict(server.url, {"text": "hello"}) == {"said": "HELLO!"}
    finally:
        assert server.stop() == 0, server.output()
    served = server.output()
    assert "Serving from a venv of the model's own dependencies" in served
    assert "building the environment" in served
    (serve_env,) = [e for e in list_envs(cache) if e["step"] == "serve"]
    assert {"litserve", "mllib-shout-test", "uvicorn"} <= set(serve_env["packages"])

    try:
        deployed = cli(project, "deploy", "shouter", "--env", "staging")
        assert deployed.returncode == 0, deployed.output
        (status,) = cli(project, "deploy", "status", "--env", "staging", "--json").json()
        assert _predict(status["url"], {"text": "again"}) == {"said": "AGAIN!"}
        again = project.mllib("train", "model.py", "--runtime", "venv", "--suffix=?")
        assert again.returncode == 0, again.output
        redeployed = cli(project, "deploy", "shouter", "--env", "staging")
        assert redeployed.returncode == 0, redeployed.output
        (status,) = cli(project, "deploy", "status", "--env", "staging", "--json").json()
        assert _predict(status["url"], {"text": "twice"}) == {"said": "TWICE?"}
    finally:
        cli(project, "deploy", "stop", "--env", "staging")

    assert "building the environment" not in deployed.output + redeployed.output  # reused
    assert "Serving from a venv" in deployed.output
    environment = status["environment"]
    assert (environment["kind"], environment["key"]) == ("venv", serve_env["key"])
    assert environment["python"] == str(cache / serve_env["key"] / "bin" / "python")
    assert f"mllib's environment cannot import {PACKAGE} (model.py)" in environment["why"]
    assert (cache / serve_env["key"] / META_FILE).is_file()

    # kill -9 of `mllib serve` takes its venv's server with it: the port is free again
    server = DevServer(project, "model.py", "--workers", "1")
    try:
        wait_for(lambda: _ready(server.url), timeout=240, what="the dev server again")
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        wait_for(lambda: not _ready(server.url), timeout=60, what="its server to stop")
    finally:
        server.stop()


def test_a_model_mllibs_environment_serves_is_served_by_mllibs_own_python(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    project.write("model.py", PLAIN)
    project.write("mllib.toml", 'name = "plain"\n[deploy.staging]\nport = 0\n')
    assert project.mllib("train", "model.py", "--runtime", "process").returncode == 0

    try:
        deployed = cli(project, "deploy", "plain", "--env", "staging")
        assert deployed.returncode == 0, deployed.output
        (status,) = cli(project, "deploy", "status", "--env", "staging", "--json").json()
        assert _predict(status["url"], {"x": 2}) == {"y": 3}
    finally:
        cli(project, "deploy", "stop", "--env", "staging")

    assert (status["environment"]["kind"], status["environment"]["python"]) == (
        "mllib",
        sys.executable,
    )
    assert "venv" not in deployed.output
    assert not cache.exists() or not list_envs(cache)  # nothing was built


def test_a_serving_venv_that_cannot_be_built_fails_the_deploy_in_one_line(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(tmp_path / "fresh-cache"))
    project.write("requirements.txt", "mllib-no-such-package-for-tests==0.0.1\n")
    project.write("mllib.toml", 'name = "shouter"\n[deploy.staging]\nport = 0\n')
    project.write(
        "model.py",
        PLAIN.replace("class Plain:", "class Shouter:").replace(
            "        return {", "        import mllib_nowhere_test\n\n        return {"
        ),
    )
    assert project.mllib("train", "model.py", "--runtime", "process").returncode == 0

    deployed = cli(project, "deploy", "shouter", "--env", "staging")

    assert deployed.returncode == 1, deployed.output
    assert "The serving venv could not be built: uv could not install" in deployed.stderr
    assert "requirements.txt:1: mllib-no-such-package-for-tests==0.0.1" in deployed.stderr
    (event,) = cli(project, "deploy", "history", "--json").json()
    assert (event["action"], event["result"]) == ("deploy", "failed")
    (status,) = cli(project, "deploy", "status", "--env", "staging", "--json").json()
    assert status["state"] == "none"  # nothing was started
