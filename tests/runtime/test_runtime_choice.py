"""`auto` is stable: Docker only when the engine answers and has (or can build) the base image,
else the process runtime with the reason said once; the choice is recorded and a rerun keeps it."""

from __future__ import annotations

from docker import DockerClient

from tests.conftest import Project


def test_auto_runs_as_a_process_when_the_engine_lacks_the_base_image(
    model_project: Project, docker_client: DockerClient
) -> None:
    model_project.write("mllib.toml", '[runtime]\nbase_image = "mllib-test-absent/base:none"\n')

    result = model_project.mllib("train", "model.py")

    assert result.returncode == 0, result.output
    run = model_project.last_run()
    assert run["runtime"] == "process"
    assert run["runtime_note"] == (
        "auto: a Docker engine answers but has no base image mllib-test-absent/base:none and "
        "cannot build it (mllib builds only its own base image), so it runs as a local process"
    )
    assert result.stderr.count("no base image") == 1  # said once, in the run's header
    again = model_project.mllib("runs", "rerun", run["id"])
    assert again.returncode == 0, again.output
    rerun = model_project.last_run()
    assert (rerun["runtime"], rerun["runtime_note"]) == ("process", f"as in run {run['id']}")


def test_auto_picks_docker_when_the_base_image_is_there(
    model_project: Project, image_repository: str
) -> None:
    from mllib.runs.runtime_choice import select_runtime
    from mllib.workspace import Workspace

    runtime, note = select_runtime(Workspace.find(model_project.root), None, False)

    assert runtime == "docker" and note.startswith("auto: a Docker engine answers at ")
