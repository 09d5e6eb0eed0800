"""The Docker runtime against the real engine: images, failures, limits, ownership, mounts, GPUs.

What every runtime must do is in tests/contract; this is what only the Docker runtime does.
"""

from __future__ import annotations

import grp
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mllib.project import Project as MllibProject
from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.runtime.images import ensure_image, plan_image
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.contract.harness import (
    ProbeProject,
    RuntimeUnderTest,
    docker_leftovers,
    make_project,
)
from tests.runtime.locks import uv_lock

if TYPE_CHECKING:
    from docker import DockerClient

BUILD_DIR = "/tmp/mllib-build"

# Every test here checks the engine for leftovers: none of another worker's builds may run meanwhile.
pytestmark = pytest.mark.docker_alone


@pytest.fixture
def docker_project(
    tmp_path: Path, docker_client: DockerClient, image_repository: str
) -> ProbeProject:
    runtime = RuntimeUnderTest(
        "docker",
        lambda run: docker_leftovers(docker_client, run.id),
        {"image_repository": image_repository},
    )
    return make_project(tmp_path, runtime)


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: no build container, no new volume, no build folder of ours remains."""
    if "docker_client" not in request.fixturenames:
        yield
        return
    client = request.getfixturevalue("docker_client")
    volumes = {v.name for v in client.volumes.list()}
    dangling = _dangling_mllib_layers(client)
    temp = set(Path("/tmp").glob("mllib-wheel*"))
    yield
    # The engine removes a cancelled build's container itself, a moment after the build stops.
    wait_for(
        lambda: not _build_containers(client), timeout=60, what="the image builds' containers to go"
    )
    assert {v.name for v in client.volumes.list()} <= volumes
    assert _dangling_mllib_layers(client) <= dangling  # failed or cancelled builds leave none
    assert set(Path("/tmp").glob("mllib-wheel*")) <= temp


def _dangling_mllib_layers(client: DockerClient) -> set[str]:
    """Untagged images built on mllib's base image (they inherit its labels)."""
    found = client.images.list(filters={"dangling": True, "label": "org.mllib.base"})
    return {image.id for image in found}


def _build_containers(client: DockerClient) -> list[str]:
    """Containers running a build step, from the engine's list alone (inspecting each one
    would race with the engine removing a cancelled build's container)."""
    listed = client.api.containers(all=True)
    return [c["Names"][0] for c in listed if BUILD_DIR in (c.get("Command") or "")]


def _latest(project: ProbeProject) -> dict:
    return views.list_dicts(Workspace.find(project.root), limit=1)[0]


def _toml(project: ProbeProject, **settings: object) -> None:
    """Add keys to the project's [runtime] table."""
    from tests.contract.harness import toml_value

    text = (project.root / "mllib.toml").read_text()
    added = "".join(f"{k} = {toml_value(v)}\n" for k, v in settings.items())
    (project.root / "mllib.toml").write_text(text.replace("[runtime]\n", f"[runtime]\n{added}"))


# --- images ---------------------------------------------------------------------------------


def test_unchanged_dependencies_build_nothing(
    docker_project: ProbeProject, docker_client: DockerClient
) -> None:
    project = MllibProject.find(docker_project.root)
    first = ensure_image(docker_client, project.root, project.config)
    lines: list[str] = []

    again = ensure_image(docker_client, project.root, project.config, progress=lines.append)

    assert again == first
    assert lines == []  # nothing built, nothing to report
    (docker_project.root / "requirements.txt").write_text("cloudpickle\n")
    changed = plan_image(docker_client, project.root, project.config)
    assert changed.tag != first


def test_image_pins_the_hosts_versions(
    docker_project: ProbeProject, docker_client: DockerClient
) -> None:
    project = MllibProject.find(docker_project.root)
    tag = ensure_image(docker_client, project.root, project.config)

    output = docker_client.containers.run(
        tag,
        [
            "python",
            "-c",
            "import cloudpickle, orjson, mllib; print(cloudpickle.__version__, orjson.__version__, mllib.__version__)",
        ],
        remove=True,
    )

    host = [importlib.metadata.version(n) for n in ("cloudpickle", "orjson", "mllib")]
    assert output.decode().split() == host


def test_the_runs_of_one_image_read_its_installed_packages_once_between_them(
    docker_project: ProbeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's own cache goes with it: the record of what the image has installed is
    kept in the user's cache on the host, so the second run reads it rather than the metadata."""
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    first = docker_project.train()
    assert first.status == "succeeded", first.error
    (record,) = (cache / "packages").glob("*.json")  # one entry, for the image
    written = record.stat()

    second = docker_project.train()

    assert second.status == "succeeded", second.error
    assert list((cache / "packages").glob("*.json")) == [record]
    after = record.stat()  # read, not written again (it is replaced whole when written)
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    ws = Workspace.find(docker_project.root)
    envs = [views.show(ws, run.id)["environment"] for run in (first, second)]
    assert envs[0]["runtime"] == "docker" and "cloudpickle" in envs[0]["packages"]
    assert envs[1]["packages"] == envs[0]["packages"]
    assert envs[1]["packages_hash"] == envs[0]["packages_hash"]


def test_bad_requirement_is_a_user_error_naming_its_line(docker_project: ProbeProject) -> None:
    (docker_project.root / "requirements.txt").write_text(
        "cloudpickle\nmllib-no-such-package-for-tests==0.0.1\n"
    )

    result = docker_project.cli("train", "model.py")

    assert result.returncode == 1, result.stderr
    run = _latest(docker_project)
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert (
        "No matching distribution found for mllib-no-such-package-for-tests==0.0.1" in run["error"]
    )
    assert "requirements.txt:2" in run["error"]
    log = (docker_project.root / ".mllib" / "runs" / run["id"] / "output.log").read_text()
    assert "Step " in log and "pip install" in log  # the build is in the run's log
    assert "docker runtime ([runtime] local = 'docker'" in result.stderr  # said once, with why
    assert "Step 1/" in result.stderr  # progress shown (plain lines: stderr is no terminal)


def test_a_hash_locked_requirements_file_and_its_constraints_stay_in_force_in_the_image(
    docker_project: ProbeProject, docker_client: DockerClient
) -> None:
    orjson = importlib.metadata.version("orjson")
    lock = uv_lock(docker_project.root, ["cloudpickle"])
    (docker_project.root / "requirements.txt").write_text(lock + "-c constraints.txt\n")
    (docker_project.root / "constraints.txt").write_text(f"orjson=={orjson}\t# the host's\n")

    result = docker_project.cli("train", "model.py")

    assert result.returncode == 0, result.stderr
    run = views.show(Workspace.find(docker_project.root), _latest(docker_project)["id"])
    log = (docker_project.root / ".mllib" / "runs" / run["id"] / "output.log").read_text()
    assert "--require-hashes -r /tmp/mllib-build/locked.txt" in log  # the lock, as locked
    assert "-c /tmp/mllib-build/constraints.txt" in log
    image = run["environment"]["runtime_id"]
    versions = docker_client.containers.run(
        image, ["python", "-c", "import cloudpickle, orjson; print(cloudpickle.__version__, orjson.__version__)"],
        remove=True,
    ).decode().split()  # fmt: skip
    assert versions == [importlib.metadata.version("cloudpickle"), orjson]


def test_unreachable_engine_is_a_system_error(docker_project: ProbeProject, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}

    result = subprocess.run(
        [sys.executable, "-m", "mllib", "train", "model.py"],
        cwd=docker_project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 3, result.stderr
    run = _latest(docker_project)
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "no Docker engine answers" in run["error"]


def test_missing_base_image_is_a_system_error_saying_what_to_do(
    docker_project: ProbeProject,
) -> None:
    _toml(docker_project, base_image="mllib-test-absent/base:nope")

    result = docker_project.cli("train", "model.py")

    assert result.returncode == 3, result.stderr
    run = _latest(docker_project)
    assert run["failure_class"] == "system_error"
    assert "mllib-test-absent/base:nope is not in the Docker engine" in run["error"]
    assert "mllib runtime build-base" in result.stderr


def test_a_run_submitted_from_another_python_minor_version_says_so(
    docker_project: ProbeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offline base image has Debian's Python; a run submitted from another minor version is
    told, in its log, its recorded environment and `runs show`. This machine runs the image's
    minor version, so the submitting machine's version is simulated: the run is prepared as if
    from Python 3.99 (only the version mllib reads here changes; the container is untouched)."""
    import platform

    monkeypatch.setattr(platform, "python_version", lambda: "3.99.1")
    run = docker_project.train(evaluate=False)
    monkeypatch.undo()

    shown = views.show(Workspace.find(docker_project.root), run.id)
    env = shown["environment"]
    assert run.status == "succeeded", run.error
    assert (shown["submitted_python"], env["runtime"]) == ("3.99.1", "docker")
    note = (
        f"the image {env['runtime_id']} has Python {env['python']}, not 3.99 as the machine the "
        "run came from: pinned versions may not exist for it, results can differ, and a model "
        "pickled under one minor version may not load under the other"
    )
    assert env["note"] == note
    assert f"mllib: note: {note}" in Path(shown["log_path"]).read_text()
    printed = docker_project.cli("runs", "show", run.id).stdout
    assert "submitted from Python 3.99.1 (another minor version" in printed


# --- limits, failures, cancellation ---------------------------------------------------------


def test_out_of_memory_is_a_system_error_saying_how_to_raise_the_limit(
    docker_project: ProbeProject,
) -> None:
    _toml(docker_project, memory="128m")

    result = docker_project.cli("train", "model.py", "--mode=oom")

    assert result.returncode == 3, result.stderr
    run = _latest(docker_project)
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "ran out of memory" in run["error"]
    assert "128m" in run["error"] and "[runtime] memory" in run["error"]
    assert (
        docker_project.runtime.still_running(
            get_run(Workspace.find(docker_project.root).registry, run["id"])
        )
        == []
    )


def test_a_run_may_outlast_the_engine_api_timeout(
    docker_project: ProbeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mllib.runtime.docker

    monkeypatch.setattr(mllib.runtime.docker, "API_TIMEOUT_S", 1)

    run = docker_project.train({"mode": "nap"})  # sleeps 3 s, three times the timeout

    assert run.status == "succeeded", run.error


def test_cancel_during_the_image_build_stops_it(docker_project: ProbeProject) -> None:
    # An index that never answers keeps pip (and so the build) busy until it is cancelled.
    (docker_project.root / "requirements.txt").write_text(
        "--index-url http://10.255.255.1/simple\ncloudpickle==0.0.0.1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mllib", "train", "model.py"],
        cwd=docker_project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs = docker_project.root / ".mllib" / "runs"
        wait_for(
            lambda: any("pip install" in p.read_text() for p in runs.glob("*/output.log")),
            timeout=60,
            what="the build to reach pip",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130  # the build need not finish first
    finally:
        proc.kill()
        proc.wait()
    assert _latest(docker_project)["status"] == "cancelled"


def test_orphaned_container_is_removed_when_runs_are_listed(docker_project: ProbeProject) -> None:
    started = docker_project.cli("train", "model.py", "--mode=sleep", "--detach")
    run_id = started.stdout.strip().splitlines()[-1]
    registry = Workspace.find(docker_project.root).registry
    log = docker_project.root / ".mllib" / "runs" / run_id / "output.log"
    wait_for(
        lambda: log.is_file() and "sleeping" in log.read_text(), timeout=60, what="the run to start"
    )
    run = get_run(registry, run_id)
    os.kill(run.supervisor_pid, signal.SIGKILL)  # the supervisor dies; its container lives on
    wait_for(lambda: not _alive(run.supervisor_pid), timeout=60, what="the supervisor to die")
    assert docker_project.runtime.still_running(run) != []

    listed = docker_project.cli("runs", "list")

    assert listed.returncode == 0, listed.stderr
    run = get_run(registry, run_id)
    assert (run.status, run.failure_class) == ("failed", "system_error")
    assert docker_project.runtime.still_running(run) == []


def _alive(pid: int) -> bool:
    from mllib.runtime.processes import is_alive

    return is_alive(pid)


# --- who owns the files, what the container sees --------------------------------------------


@pytest.fixture
def unprivileged() -> Iterator[tuple[int, int, Path]]:
    """A uid:gid with no passwd entry, and a folder it owns (tmp_path's parents are root's 0700)."""
    import tempfile

    uid = gid = 42421
    folder = Path(tempfile.mkdtemp(prefix="mllib-owner-"))
    yield uid, gid, folder
    shutil.rmtree(folder, ignore_errors=True)


def test_files_written_back_belong_to_the_invoking_user(
    unprivileged: tuple[int, int, Path], docker_client: DockerClient, image_repository: str
) -> None:
    uid, gid, folder = unprivileged
    runtime = RuntimeUnderTest("docker", lambda run: [], {"image_repository": image_repository})
    project = make_project(folder, runtime)
    # Python lives under /root here, out of an unprivileged user's reach: run once as root so
    # every module a run needs is loaded, then fork and become the user (no exec needed).
    assert project.train().status == "succeeded"
    shutil.rmtree(project.root / ".mllib")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, gid)

    pid = os.fork()
    if pid == 0:  # the child: an unprivileged user who reaches the engine through the docker group
        code = 2
        try:
            os.setgroups([grp.getgrnam("docker").gr_gid])
            os.setgid(gid)
            os.setuid(uid)
            os.environ["HOME"] = str(folder)
            code = 0 if project.train().status == "succeeded" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    written = [project.root / "written-in-project.txt", *(project.root / ".mllib").rglob("*")]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(uid, gid)}


def test_data_paths_are_mounted_read_only(docker_project: ProbeProject) -> None:
    run = docker_project.train({"mode": "write_data"})

    assert run.status == "succeeded", run.error
    shown = views.show(Workspace.find(docker_project.root), run.id)
    result = next(a for a in shown["artifacts"] if a["path"] == "artifacts/write.txt")
    text = Workspace.find(docker_project.root).store.get_bytes(result["sha256"]).decode()
    assert text == "OSError: Read-only file system"
    assert "appended" not in (docker_project.outside / "train.txt").read_text()


def test_relative_data_path_outside_the_project_is_made_absolute(
    tmp_path: Path, docker_client: DockerClient, image_repository: str
) -> None:
    runtime = RuntimeUnderTest("docker", lambda run: [], {"image_repository": image_repository})
    project = make_project(tmp_path, runtime, env={"DATA_PATH": "../outside/train.txt"})

    run = project.train()

    assert run.status == "succeeded", run.error
    shown = views.show(Workspace.find(project.root), run.id)
    assert shown["params"]["data_path"] == str(project.outside / "train.txt")
    assert shown["metrics"]["data_chars"] == len("outside data\nsecond line\nthird\n")
