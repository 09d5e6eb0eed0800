"""How a run becomes a container (mounts, environment, user, limits, GPUs) and how the runtime
is chosen. Most of this needs no engine; where one is used, it is the real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mllib.config import Config
from mllib.errors import ConfigError
from mllib.project import Project
from mllib.registry.runs import RunRecord
from mllib.runs.runtime_choice import select_runtime
from mllib.runtime.base import Job
from mllib.runtime.data_paths import env_data_paths
from mllib.runtime.docker import ContainerSettings, container_options, data_target
from mllib.workspace import Workspace
from tests.contract.harness import RuntimeUnderTest, make_project

FAKE_NVIDIA_SMI = """#!/bin/sh
# A stand-in for nvidia-smi: this machine has no GPU, so the GPU here is simulated.
echo "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-00000000-0000-0000-0000-000000000000)"
"""


@pytest.fixture
def simulated_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a stand-in nvidia-smi first on PATH (simulated GPU: none exists on this machine)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _job(tmp_path: Path, **changes: object) -> Job:
    root = tmp_path / "project"
    (root / "run").mkdir(parents=True, exist_ok=True)
    job = Job("r1", root / "run", root, root, env={"MLLIB_RUN_ID": "r1", "LR": "0.1"})
    for key, value in changes.items():
        setattr(job, key, value)
    return job


def test_gpus_are_requested_only_when_nvidia_smi_lists_some(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi here
    assert "device_requests" not in container_options(_job(tmp_path), ContainerSettings(), "img")


def test_a_simulated_gpu_is_requested(tmp_path: Path, simulated_gpu: None) -> None:
    options = container_options(_job(tmp_path), ContainerSettings(), "img")

    (request,) = options["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert "device_requests" not in container_options(
        _job(tmp_path), ContainerSettings(gpus="none"), "img"
    )


def test_a_run_given_its_own_gpu_gets_only_that_one(tmp_path: Path, simulated_gpu: None) -> None:
    """An agent's slot: the container is given GPU 1 alone, which it sees as its only GPU."""
    options = container_options(_job(tmp_path, gpus=["1"]), ContainerSettings(), "img")

    (request,) = options["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]
    assert "Count" not in request or not request["Count"]
    assert options["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in options["environment"]  # inside, it is GPU 0


def test_container_runs_the_worker_as_the_invoking_user_with_fixed_paths(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    job = _job(tmp_path, data_mounts={"TRAIN": data, "SYSTEM": Path("/usr/share/dict")})

    options = container_options(job, ContainerSettings(memory="2g", cpus=1.5), "img")

    assert options["user"] == f"{os.getuid()}:{os.getgid()}"
    assert options["command"][-4:] == ["--run-dir", "/mllib/run", "--code-dir", "/mllib/code"]
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in options["mounts"]}
    assert mounts["/mllib/run"] == (str(job.run_dir), False)
    assert mounts["/mllib/code"] == (str(job.code_dir), False)
    assert mounts["/mllib/project"] == (str(job.work_dir), False)
    # The project is also where it is on the host, and runs there: paths mean the same.
    assert options["working_dir"] == str(job.work_dir)
    assert mounts[str(job.work_dir)] == (str(job.work_dir), False)
    assert mounts[str(data)] == (str(data), True)  # same path as on the host, read-only
    assert mounts["/mllib/data/SYSTEM/dict"] == ("/usr/share/dict", True)
    env = options["environment"]
    assert env["TRAIN"] == str(data) and env["SYSTEM"] == "/mllib/data/SYSTEM/dict"
    assert env["LR"] == "0.1" and env["MLLIB_RUN_ID"] == "r1"
    assert (options["mem_limit"], options["memswap_limit"]) == ("2g", "2g")
    assert options["nano_cpus"] == 1_500_000_000
    assert options["init"] is True and options["labels"]["org.mllib.run"] == "r1"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/srv/data/train.csv", "/srv/data/train.csv"),
        ("/tmp/x", "/tmp/x"),
        ("/root/data", "/root/data"),
        ("/usr/share/dict", "/mllib/data/V/dict"),
        ("/opt/venv/lib", "/mllib/data/V/lib"),
        ("/mllib/run", "/mllib/data/V/run"),
        ("/etc", "/mllib/data/V/etc"),
        ("/tmp", "/mllib/data/V/tmp"),
        ("/home", "/mllib/data/V/home"),
    ],
)
def test_data_mount_targets(path: str, target: str) -> None:
    assert data_target("V", Path(path)) == target


def test_a_project_in_an_image_folder_runs_from_mllib_project(tmp_path: Path) -> None:
    job = _job(tmp_path, work_dir=Path("/usr/src/project"))

    options = container_options(job, ContainerSettings(), "img")

    assert options["working_dir"] == "/mllib/project"
    assert "/usr/src/project" not in {m["Target"] for m in options["mounts"]}


def test_which_env_values_are_data_paths(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "in.csv").write_text("x")
    (tmp_path / "shared").mkdir()
    env = {
        "INSIDE": "data/in.csv",  # reached through the project folder: nothing to do
        "ABSOLUTE_INSIDE": str(root / "data" / "in.csv"),
        "SIBLING": "../shared",
        "MISSING": "/no/such/file",
        "WORD": "fast",
        "URL": "s3://bucket/key",
        "ROOT": "/",
    }

    assert env_data_paths(env, root) == {
        "ABSOLUTE_INSIDE": root / "data" / "in.csv",
        "SIBLING": tmp_path / "shared",
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"memory": "lots"}, "is not a size"),
        ({"cpus": 0}, "more than 0"),
        ({"network": "overlay"}, "host, bridge or none"),
        ({"gpus": "2"}, "auto or none"),
    ],
)
def test_bad_runtime_settings_are_config_errors(setting: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ContainerSettings.from_config(Config(None, {"runtime": setting}))


# --- choosing the runtime -------------------------------------------------------------------


def _workspace(tmp_path: Path, runtime_table: str = "") -> Workspace:
    (tmp_path / "mllib.toml").write_text(runtime_table)
    return Workspace(Project.find(tmp_path))


def test_auto_picks_docker_when_an_engine_answers(tmp_path: Path, docker_client: object) -> None:
    name, note = select_runtime(_workspace(tmp_path), None, remote=False)

    assert name == "docker"
    assert note.startswith("auto: a Docker engine answers at unix://")
    assert "runs on CPU" in note


def test_auto_falls_back_to_process_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")

    name, note = select_runtime(_workspace(tmp_path), None, remote=False)

    assert name == "process"
    assert note.startswith(f"auto: no Docker engine answers at unix://{tmp_path}/absent.sock")


def test_forced_and_configured_runtimes_win(tmp_path: Path, simulated_gpu: None) -> None:
    ws = _workspace(tmp_path, '[runtime]\nlocal = "docker"\n')

    assert select_runtime(ws, "process", remote=False) == ("process", "--runtime process")
    name, note = select_runtime(ws, None, remote=False)
    assert name == "docker"
    assert note == "[runtime] local = 'docker'; 1 NVIDIA GPU passed to the container"


def _training_run(runtime: str) -> RunRecord:
    return RunRecord("r1234", "Model", "train", "succeeded", "2024-01-01", runtime=runtime)


def test_a_training_runs_local_runtime_is_used_again_unless_one_is_asked_for(
    tmp_path: Path, docker_client: object
) -> None:
    ws = _workspace(tmp_path, '[runtime]\nlocal = "process"\n')

    name, note = select_runtime(ws, None, remote=False, source=_training_run("docker"))
    assert name == "docker" and note.startswith("as training run r1234; ")
    assert select_runtime(ws, "process", remote=False, source=_training_run("docker")) == (
        "process",
        "--runtime process",
    )


def test_a_docker_training_run_without_an_engine_now_falls_back_to_the_usual_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")

    name, note = select_runtime(
        _workspace(tmp_path), None, remote=False, source=_training_run("docker")
    )

    assert name == "process"
    assert note.startswith(f"auto: no Docker engine answers at unix://{tmp_path}/absent.sock")


def test_a_remote_training_run_keeps_the_local_rule(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, '[runtime]\nlocal = "process"\n')

    assert select_runtime(ws, None, remote=False, source=_training_run("ssh")) == (
        "process",
        "[runtime] local = 'process'",
    )


def test_help_imports_no_docker_sdk() -> None:
    code = (
        "import sys\nfrom mllib.cli import main\nmain(['--help'])\nmain(['runtime', '--help'])\n"
        "print(*(m for m in ('docker', 'requests', 'packaging') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ""  # none of them was imported


# --- a simulated GPU against the real engine ------------------------------------------------


def test_gpu_request_without_nvidia_runtime_is_a_system_error_saying_what_to_do(
    tmp_path: Path, simulated_gpu: None, docker_client: object, image_repository: str
) -> None:
    runtime = RuntimeUnderTest("docker", lambda run: [], {"image_repository": image_repository})
    project = make_project(tmp_path, runtime)

    run = project.train()

    assert (run.status, run.failure_class) == ("failed", "system_error")
    assert "NVIDIA Container Toolkit" in run.error and 'gpus = "none"' in run.error
    assert "1 NVIDIA GPU passed to the container" in run.runtime_note


def test_image_repository_must_be_a_docker_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from mllib.runtime.images import image_settings

    monkeypatch.delenv("MLLIB_IMAGE_REPOSITORY")
    config = Config(None, {"runtime": {"image_repository": "My Team/Model"}})

    with pytest.raises(ConfigError, match="is not a Docker repository name"):
        image_settings(config)
    assert image_settings(Config(None, {}))[1] == "mllib/env"
    monkeypatch.setenv("MLLIB_IMAGE_REPOSITORY", "team/override")
    assert image_settings(config)[1] == "team/override"


def test_the_process_runtime_names_data_mounts_by_their_variables(tmp_path: Path) -> None:
    """Job.data_mounts means the same in every runtime: the variable names the data."""
    from mllib.runtime.process import ProcessRuntime

    data = tmp_path / "data.txt"
    data.write_text("x\n")
    job = _job(tmp_path, data_mounts={"ONLY_MOUNTED": data})
    show_env = tmp_path / "show-env"  # stands in for python: prints the environment it gets
    show_env.write_text("#!/bin/sh\nenv\n")
    show_env.chmod(0o755)
    runtime = ProcessRuntime(python=str(show_env))

    handle = runtime.start(job)
    printed = b"".join(handle.output()).decode()
    handle.wait()

    assert f"ONLY_MOUNTED={data}" in printed.splitlines()


def test_runtime_build_of_a_folder_that_does_not_exist_builds_nothing(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "mllib.toml").write_text("")  # a project here must not be built instead
    result = run_cli(["runtime", "build", "no-such-folder"], tmp_path)
    assert result.returncode == 4 and "No project folder 'no-such-folder'" in result.stderr
    assert result.stdout == ""  # no image tag printed
