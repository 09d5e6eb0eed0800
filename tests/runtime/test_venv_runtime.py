"""The venv runtime: runs in a venv of the project's own dependencies, built by uv (or pip), cached
by content, with requirements as pip reads them (hashes and constraints in force), and failures
classed by whose fault they are. Real installers, real package indexes (the host's), real runs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mllib.runtime.installer import choose_installer
from mllib.runtime.venvs import META_FILE
from tests.conftest import Project, model_source
from tests.runtime.locks import uv_lock


@pytest.fixture
def venv_project(project: Project) -> Project:
    project.write("model.py", model_source("yaml_docs"))
    project.write("requirements.txt", "PyYAML\n")
    project.write("mllib.toml", '[runtime]\nlocal = "venv"\n')
    return project


def _log(project: Project, run: dict) -> str:
    return Path(run["log_path"]).read_text()


def test_a_venv_is_built_once_and_reused(
    venv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "fresh-cache"  # this test watches a build: not the session's cache
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))

    first = venv_project.mllib("train", "model.py", "--evaluate")
    second = venv_project.mllib("train", "model.py", "--n=4")

    assert first.returncode == 0 and second.returncode == 0, first.output + second.output
    runs = [venv_project.show(r["id"]) for r in venv_project.mllib("runs", "list", "--json").json()]
    newer, older = runs
    assert "venv runtime ([runtime] local = 'venv')" in first.stderr
    assert "building the environment" in _log(venv_project, older)
    assert "pyyaml" in _log(venv_project, older).lower()  # the installer's output is in the log
    (env,) = [p.parent for p in cache.glob(f"*/{META_FILE}")]
    assert f"prefix {env}" in _log(venv_project, older)  # the worker ran with the venv's python
    assert f"prefix {env}" in _log(venv_project, newer)
    assert "building the environment" not in _log(venv_project, newer)  # no installer ran
    assert "Installed" not in _log(venv_project, newer)
    assert json.loads((env / META_FILE).read_text())["packages"] == [
        "cloudpickle",
        "orjson",
        "pyyaml",
    ]
    assert newer["metrics"] == {"chars": 5.0} and older["eval_metrics"] == {"chars": 5.0}


def test_a_module_the_project_never_declared_is_a_user_error_with_a_hint(
    venv_project: Project,
) -> None:
    venv_project.write("requirements.txt", "\n")
    venv_project.write("mllib.toml", '[runtime]\nlocal = "venv"\ndetect_imports = false\n')

    result = venv_project.mllib("train", "model.py")

    assert result.returncode == 1
    run = venv_project.last_run()
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert "No module named 'yaml'" in run["error"]
    assert "add the package that provides 'yaml' to requirements.txt" in run["error"]


def test_a_requirement_no_index_has_is_a_user_error_naming_its_line(
    venv_project: Project,
) -> None:
    venv_project.write("requirements.txt", "PyYAML\nmllib-no-such-package-for-tests==0.0.1\n")

    result = venv_project.mllib("train", "model.py")

    assert result.returncode == 1, result.output
    run = venv_project.last_run()
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert "could not install the project's dependencies" in run["error"]
    assert "requirements.txt:2: mllib-no-such-package-for-tests==0.0.1" in run["error"]


def test_an_index_that_does_not_answer_is_a_system_error(venv_project: Project) -> None:
    venv_project.write(
        "requirements.txt", "--index-url http://127.0.0.1:9/simple\nmllib-never-there==1.0\n"
    )

    result = venv_project.mllib("train", "model.py")

    assert result.returncode == 3, result.output
    run = venv_project.last_run()
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "the package index could not be reached" in run["error"]


def test_a_hash_locked_requirements_file_is_installed_with_its_hashes_checked(
    venv_project: Project,
) -> None:
    lock = uv_lock(venv_project.root, ["pyyaml"])
    venv_project.write("requirements.txt", lock)
    assert venv_project.mllib("train", "model.py").returncode == 0

    tampered = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, lock)  # a wheel nobody made
    venv_project.write("requirements.txt", tampered)
    result = venv_project.mllib("train", "model.py")

    run = venv_project.last_run()
    assert result.returncode == 1, result.output
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert "hash" in run["error"].lower() and "requirements.txt:1: pyyaml==" in run["error"].lower()


def test_pip_builds_the_venv_where_uv_is_missing(venv_project: Project) -> None:
    venv_project.write("requirements.txt", "PyYAML\n--prefer-binary\n")  # another venv than uv's

    result = venv_project.mllib("train", "model.py", env={"MLLIB_INSTALLER": "pip"})

    assert result.returncode == 0, result.output
    log = _log(venv_project, venv_project.last_run())
    assert "with pip" in log and "Successfully installed" in log


def test_the_venv_gets_the_submitters_python_minor_version_or_says_why_not() -> None:
    import platform

    from mllib.runtime.venvs import find_interpreter

    here = platform.python_version()
    same_minor = ".".join([*here.split(".")[:2], "99"])  # another micro version: the same minor
    assert find_interpreter(same_minor).note is None
    assert find_interpreter(same_minor).version == here

    missing = find_interpreter("3.99.1")  # no host has it, and uv never downloads one

    assert missing.version == here  # this host's own, then
    assert missing.note == (
        f"this host has Python {here}, not 3.99 as the machine the run came from: pinned "
        "versions may not exist for it, results can differ, and a model pickled under one minor "
        "version may not load under the other"
    )


def test_pip_options_uv_ignores_in_a_file_reach_its_command_line(tmp_path: Path) -> None:
    installer = choose_installer({**os.environ, "MLLIB_INSTALLER": "uv"})
    options = ["--pre", "--trusted-host a.example --trusted-host b.example", "--only-binary :all:"]

    command, _env = installer.install(
        "python", tmp_path / "requirements.txt", None, file_options=options
    )

    assert command[-6:-2] == [
        "--allow-insecure-host",
        "a.example",
        "--allow-insecure-host",
        "b.example",
    ]
    assert "--prerelease" in command and command[command.index("--prerelease") + 1] == "allow"
    assert command[-2:] == ["-r", str(tmp_path / "requirements.txt")]


def test_runs_needing_the_same_new_venv_build_it_once_and_run_side_by_side(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run waits for the first one's build, not for its run: both train at once."""
    import subprocess
    import sys

    monkeypatch.setenv("MLLIB_ENV_CACHE", str(tmp_path / "fresh-cache"))
    project.write(
        "model.py",
        """
        import time

        import mllib


        class Slow:
            def __init__(self):
                self.name = mllib.Param("a")

            def train(self):
                with open(f"{self.name}.times", "w") as handle:
                    handle.write(f"{time.time()}\\n")
                    time.sleep(4)
                    handle.write(f"{time.time()}\\n")

            def predict(self, request):
                return request
        """,
    )
    project.write("requirements.txt", "PyYAML\n")
    command = [sys.executable, "-m", "mllib", "train", "model.py", "--runtime", "venv"]
    procs = [
        subprocess.Popen([*command, f"--name={name}"], cwd=project.root, env=os.environ.copy(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]  # fmt: skip
    errors = [proc.communicate(timeout=600)[1] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0], errors
    logs = [Path(r["log_path"]).read_text() for r in map(project.show, _ids(project))]
    assert sum("mllib: building the environment" in log for log in logs) == 1
    assert sum("another run is building the environment" in log for log in logs) == 1
    (a_start, a_end), (b_start, b_end) = (
        [float(t) for t in (project.root / f"{n}.times").read_text().split()] for n in "ab"
    )
    assert a_start < b_end and b_start < a_end  # they trained at the same time


def _ids(project: Project) -> list[str]:
    return [r["id"] for r in project.mllib("runs", "list", "--json").json()]
