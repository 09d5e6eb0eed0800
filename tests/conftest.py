"""Shared fixtures: a project folder with a model, the real `mllib` command run as a subprocess, and
a real Docker engine (with cleanup of the images tests build)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mllib.runtime.engine import DockerRuntimeError
from mllib.runtime.engine import docker_client as connect

if TYPE_CHECKING:
    from docker import DockerClient

ROOT = Path(__file__).resolve().parents[1]


# Session fixtures that start something heavy, and the xdist group of the tests that use them.
SHARED_ON_ONE_WORKER = {"ray_head": "ray", "lab": "lab"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (scripts/test.sh runs the whole suite on several workers with
    `--dist loadgroup`), the tests that use one of the heavy session fixtures run on one worker
    between them, so the SSH lab and the Ray head are each started once, not once per worker;
    every other test stays with the tests of its file (their module fixtures and their order)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((g for fixture, g in SHARED_ON_ONE_WORKER.items() if fixture in names), None)
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def uv() -> Path:
    """The uv that scripts/lib/common.sh installs (in .venv-uv, or MLLIB_UV_VENV) and sets up with."""
    path = Path(os.environ.get("MLLIB_UV_VENV", ROOT / ".venv-uv")) / "bin" / "uv"
    if not path.exists():
        pytest.fail(f"{path} is missing: run the tests through scripts/test.sh, which installs it")
    return path


_RUN_ID = uuid.uuid4().hex


def pytest_configure(config: pytest.Config) -> None:
    """One id for the whole test run, which pytest-xdist hands to every worker (so they share
    the run's images and venvs)."""
    if hasattr(config.option, "testrunuid") and not hasattr(config, "workerinput"):
        config.option.testrunuid = config.option.testrunuid or _RUN_ID


def _test_run_id(config: pytest.Config) -> str:
    worker = getattr(config, "workerinput", {})
    return worker.get("testrunuid") or getattr(config.option, "testrunuid", None) or _RUN_ID


def _images_repository(config: pytest.Config) -> str:
    return f"mllib-test-{_test_run_id(config)[:10]}/env"


def _turn(base: Path, exclusive: bool) -> Any:
    """Take `base`'s lock (exclusive or shared) through its gate, one waiter at a time, so a
    test waiting to hold it alone is not starved by shared holders that keep overlapping (flock
    favours no one); the lock lasts until the returned file is closed."""
    import fcntl

    held = open(base, "a")  # noqa: SIM115 (closed by the caller: that releases the lock)
    with open(f"{base}.gate", "a") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(held, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    return held


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: waiting is not the test's time
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under pytest-xdist, the Docker engine's turns: tests that check it for leftovers (marked
    `docker_alone`: no new volume, dangling layer or build container) hold it alone, while the
    other tests that use the engine share it: a check never sees another worker's build."""
    if not hasattr(item.config, "workerinput"):
        yield
        return
    base = Path(tempfile.gettempdir()) / f"mllib-test-{_test_run_id(item.config)[:10]}"
    docker_alone = item.get_closest_marker("docker_alone") is not None
    engine = None
    if docker_alone or "docker_client" in getattr(item, "fixturenames", ()):
        engine = _turn(Path(f"{base}.docker"), exclusive=docker_alone)
    try:
        yield
    finally:
        if engine is not None:
            engine.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the images this test run tagged, once every test is done: in the process that
    ran the tests, or with workers in the controller after all of them ended."""
    if hasattr(session.config, "workerinput"):
        return
    base = Path(tempfile.gettempdir()) / f"mllib-test-{_test_run_id(session.config)[:10]}"
    for path in (Path(f"{base}.docker"), Path(f"{base}.docker.gate")):  # the turns (above)
        path.unlink(missing_ok=True)
    try:
        client = connect(timeout=120)
    except DockerRuntimeError:
        return
    try:
        remove_images(client, _images_repository(session.config))
    finally:
        client.close()


@pytest.fixture(scope="session")
def _session_images(request: pytest.FixtureRequest) -> str:
    """The image repository of this test run: runs in Docker tag their images there (every
    worker the same), and whatever it holds is removed at the end (pytest_sessionfinish: the
    engine is shared with everyone else)."""
    return _images_repository(request.config)


@pytest.fixture(scope="session")
def session_env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv cache of this test run: runs in venvs share it (venvs are keyed by their
    content and built under a lock, so tests with the same dependencies build one venv between
    them, on whichever worker comes first)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's temp folder, above each worker's own
    cache = base / "envs"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _session_images: str, session_env_cache: Path
) -> None:
    """Tests never read a developer's registry settings, agents or venvs; output is plain and
    wide."""
    for var in ("MLLIB_REGISTRY", "MLLIB_STORE", "MLLIB_DEBUG", "MLLIB_INSTALLER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(session_env_cache))
    monkeypatch.setenv("MLLIB_IMAGE_REPOSITORY", _session_images)
    monkeypatch.setenv("MLLIB_HOME", str(tmp_path / "mllib-home"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)


def run_cli(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> Result:
    """Run the real `mllib` command (python -m mllib) and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "mllib", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Project:
    root: Path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def mllib(self, *args: str, **kwargs) -> Result:
        return run_cli(list(args), self.root, **kwargs)

    def last_run(self) -> dict:
        runs = self.mllib("runs", "list", "--json", "--limit", "1").json()
        assert runs, "no run was recorded"
        return self.mllib("runs", "show", runs[0]["id"], "--json").json()

    def show(self, run_id: str) -> dict:
        return self.mllib("runs", "show", run_id, "--json").json()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project folder; write a model.py into it with project.write()."""
    root = tmp_path / "proj"
    root.mkdir()
    return Project(root)


@pytest.fixture
def model_project(project: Project) -> Project:
    """A project holding tests/models/basic.py as model.py."""
    project.write("model.py", (ROOT / "tests" / "models" / "basic.py").read_text())
    return project


def model_source(name: str) -> str:
    return (ROOT / "tests" / "models" / f"{name}.py").read_text()


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
):
    """Poll until `condition()` is truthy; fail the test with `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- a real Docker engine ------------------------------------------------------------------


def docker_unavailable(reason: str) -> None:
    """Fail under CI (CI=true), where an engine is required; skip elsewhere, saying why."""
    unavailable(reason)


def unavailable(reason: str) -> None:
    """Fail under CI (CI=true), where what the test needs must be there; skip elsewhere."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """A docker SDK client for a reachable engine: fails under CI=true, skips otherwise."""
    try:
        client = connect(timeout=120)
        client.ping()
    except DockerRuntimeError as exc:
        docker_unavailable(str(exc))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: DockerClient) -> str:
    """The offline base image's tag, built here if the engine lacks it (about a minute, once)."""
    from mllib.runtime.base_image import DEFAULT_TAG, build_base_image

    build_base_image(DEFAULT_TAG)
    return DEFAULT_TAG


@pytest.fixture(scope="session")
def image_repository(docker_client: DockerClient, base_image: str, _session_images: str) -> str:
    """This session's image repository, for tests that need a reachable engine and base image.

    Every test runs with MLLIB_IMAGE_REPOSITORY set to it; tests also write it as `[runtime]
    image_repository`, so they never touch images of other sessions or of real projects.
    """
    return _session_images


def remove_images(client: DockerClient, repository: str) -> None:
    """Remove the images tagged in `repository`, `repository-deps` and `repository-python`
    (children first)."""
    import docker.errors

    for name in (repository, f"{repository}-deps", f"{repository}-python"):
        for image in client.images.list(name=name):
            for tag in image.tags:
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.NotFound:
                    pass


# --- real mounts -----------------------------------------------------------------------------


@dataclass
class Mounts:
    """Small tmpfs filesystems mounted for one test (root needed), unmounted at its end."""

    mounted: list[Path]

    def tmpfs(self, folder: Path, size: str = "16m") -> Path:
        """Mount a tmpfs of `size` at `folder` (created if missing): another filesystem than
        the test's own, or a small disk to fill."""
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            check=True,
        )
        self.mounted.append(folder)
        return folder

    @staticmethod
    def fill(folder: Path) -> None:
        """Leave no space on `folder`'s filesystem (a filler file written until ENOSPC)."""
        import contextlib

        with open(folder / ".filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while filler.write(bytes(4096)):
                pass

    @staticmethod
    def free(folder: Path) -> None:
        (folder / ".filler").unlink(missing_ok=True)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    """Mount real tmpfs filesystems (needs root: fails under CI=true without it, skips elsewhere)."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    found = Mounts([])
    try:
        yield found
    finally:
        for folder in reversed(found.mounted):
            subprocess.run(["umount", "--lazy", str(folder)], check=False)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One real Ray head on loopback for the whole session, started when a test first needs it
    (tests/ray/head.py); needs Ray installed (fails under CI=true, else skips). It serves both
    kinds of node: it sees this machine's files (`[ray] files = "shared"`) except one folder,
    `head.hidden`, which is empty for it and its jobs, where shipped runs' projects live
    (`ray_shipped_folder`), as on nodes that do not share this machine's filesystem."""
    hidden = tmp_path_factory.mktemp("hidden-from-ray")
    with running_head(hide=(hidden,)) as head:
        assert list(Path(f"/proc/{head.process.pid}/root{hidden}").iterdir()) == []
        head.hidden = hidden
        yield head


@pytest.fixture
def ray_shipped_folder(ray_head: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder the session's Ray head cannot see (its `hidden` one), for a test's project
    shipped to it; MLLIB_HOME is moved there too, so nothing of the test is visible to its jobs."""
    folder = Path(tempfile.mkdtemp(prefix="t-", dir=ray_head.hidden))
    monkeypatch.setenv("MLLIB_HOME", str(folder / "mllib-home"))
    return folder


@contextlib.contextmanager
def running_head(**options: Any) -> Iterator:
    """A real Ray head (RayHead.start(**options)) whose token this process and its commands
    use while it runs; skips without Ray (fails under CI=true)."""
    from tests.ray.head import RayHead, missing_prerequisite

    reason = missing_prerequisite()
    if reason:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")
    head = RayHead.start(**options)
    saved = {name: os.environ.get(name) for name in head.env}
    os.environ.update(head.env)  # mllib's clients (this process, its commands) use its token
    try:
        yield head
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        head.stop()


# -- databases: every registry and queue test runs on SQLite and on PostgreSQL -----------------
@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the test session (tests/pgcluster.py). Without
    PostgreSQL installed the tests that need it skip, or fail under CI=true."""
    from tests.pgcluster import Cluster

    try:
        cluster = Cluster()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not available here: {exc}")
    yield cluster
    cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path) -> str:
    """A fresh, empty database's location: a SQLite file, or a PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "server.db")
    return request.getfixturevalue("pg_cluster").new_database()
