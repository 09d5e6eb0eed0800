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
from mllib.runtime.venvs import META_FILE, PYCACHE, list_envs
from tests.conftest import Project, model_source
from tests.runtime.locks import uv_lock
from tests.runtime.pythons import other_minor_python


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
        "sentry-sdk",
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
    line = 1 + next(i for i, text in enumerate(lock.splitlines()) if text.startswith("pyyaml=="))
    assert "hash" in run["error"].lower()
    assert f"requirements.txt:{line}: pyyaml==" in run["error"].lower()  # after uv's header


def test_pip_builds_the_venv_where_uv_is_missing(venv_project: Project) -> None:
    venv_project.write("requirements.txt", "PyYAML\n--prefer-binary\n")  # another venv than uv's

    result = venv_project.mllib("train", "model.py", env={"MLLIB_INSTALLER": "pip"})

    assert result.returncode == 0, result.output
    log = _log(venv_project, venv_project.last_run())
    assert "with pip" in log and "Successfully installed" in log


def test_runs_write_the_bytecode_they_need_into_the_venv_never_into_the_project(
    venv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is compiled at install (most modules of a library are never imported): a run
    writes the bytecode of what it imports into the venv, for every later run, even with
    PYTHONDONTWRITEBYTECODE set (as on this machine), and leaves no __pycache__ in the project."""
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    venv_project.write("helper.py", "TWO = 2\n")
    venv_project.write("model.py", "import helper\n" + model_source("yaml_docs"))

    result = venv_project.mllib("train", "model.py", env={"PYTHONDONTWRITEBYTECODE": "1"})

    assert result.returncode == 0, result.output
    (env,) = [p.parent for p in cache.glob(f"*/{META_FILE}")]
    (site,) = env.glob("lib/python*/site-packages")
    assert not list(site.glob("yaml/__pycache__"))  # not compiled at install
    assert list(env.glob(f"{PYCACHE}/**/site-packages/yaml/__init__.*.pyc"))  # by the run
    assert list(env.glob(f"{PYCACHE}/**/helper.*.pyc"))
    assert not list(venv_project.root.rglob("__pycache__"))


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


def test_a_venv_for_another_minor_version_uses_this_hosts_python_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run submitted from another Python minor version (an agent's case) gets a venv of that
    version where this host has one installed (here pyenv's, which uv does not look in)."""
    import dataclasses
    import subprocess

    from mllib.config import Config
    from mllib.runtime.env_plan import plan_environment
    from mllib.runtime.venvs import ensure_env

    version = other_minor_python()
    if version is None:
        pytest.skip("this host has no Python 3.11+ of another minor version than this one")
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(tmp_path / "fresh-cache"))
    (tmp_path / "requirements.txt").write_text("PyYAML\n")
    plan = plan_environment(tmp_path, Config(None, {}))
    submitted = ".".join([*version.split(".")[:2], "99"])  # the submitter's, another micro
    lines: list[str] = []

    env = ensure_env(dataclasses.replace(plan, python=submitted), progress=lines.append)
    try:
        ran = subprocess.run([env.python, "-c", "import platform, yaml; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        env.release()

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().split(".")[:2] == version.split(".")[:2]
    assert (env.meta["python"], env.meta["python_note"]) == (ran.stdout.strip(), None)
    assert not any("note:" in line for line in lines)
    assert f"(Python {ran.stdout.strip()};" in "\n".join(lines)


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


def test_each_step_gets_what_its_own_code_and_the_trained_model_need(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyYAML is imported only by train(): the evaluation's and the prediction's venv lack it,
    but hold packaging, which the trained model's pickle names; per_step = false turns it off."""
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    project.write("model.py", model_source("per_step"))
    project.write("mllib.toml", '[runtime]\nlocal = "venv"\n')

    trained = project.mllib("train", "model.py")
    assert trained.returncode == 0, trained.output
    train = project.last_run()
    evaluated = project.mllib("evaluate", "model.py", "--run", train["id"])
    assert evaluated.returncode == 0, evaluated.output
    evaluation = project.last_run()
    predicted = project.mllib("predict", "model.py", "--run", train["id"], "--input", "{}")

    assert predicted.returncode == 0, predicted.output
    assert json.loads(predicted.stdout) == "1.2.3" and evaluation["eval_metrics"] == {"minor": 2.0}
    metas = [json.loads(path.read_text()) for path in cache.glob(f"*/{META_FILE}")]
    built = {meta["key"]: meta for meta in metas}
    train_env, eval_env = (built[run["environment"]["runtime_id"]] for run in (train, evaluation))
    assert (train_env["step"], train_env["packages"]) == (
        "train",
        ["cloudpickle", "orjson", "packaging", "pyyaml", "sentry-sdk"],
    )
    assert (eval_env["step"], eval_env["packages"]) == (
        "evaluate",
        ["cloudpickle", "orjson", "packaging", "sentry-sdk"],
    )
    assert "pyyaml" not in evaluation["environment"]["packages"]
    assert len(built) == 2  # the prediction needed what the evaluation did: its venv, reused
    assert "building the environment" not in predicted.stderr

    project.write("mllib.toml", '[runtime]\nlocal = "venv"\nper_step = false\n')
    again = project.mllib("evaluate", "model.py", "--run", train["id"])

    assert again.returncode == 0, again.output
    assert project.last_run()["environment"]["runtime_id"] == train_env["key"]


def test_the_least_recently_used_venvs_go_first_when_the_cache_is_full(
    venv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three venvs of one size in a cache that holds two and a half: the one unused longest goes
    when the third is built; the one a run just used stays."""
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("MLLIB_ENV_CACHE", str(cache))
    variants = {"a": "", "b": "--prefer-binary\n", "c": "--only-binary :all:\n"}  # other keys

    def train(variant: str, toml: str = '[runtime]\nlocal = "venv"\n') -> str:
        venv_project.write("requirements.txt", f"PyYAML\n{variants[variant]}")
        venv_project.write("mllib.toml", toml)
        result = venv_project.mllib("train", "model.py")
        assert result.returncode == 0, result.output
        return venv_project.last_run()["environment"]["runtime_id"]

    a, b = train("a"), train("b")
    sizes = {meta["key"]: meta["size"] for meta in list_envs(cache)}
    assert train("a") == a  # used again: b is now the least recently used
    cap_gb = 2.5 * max(sizes.values()) / 1e9
    c = train("c", f'[runtime]\nlocal = "venv"\nenv_cache_gb = {cap_gb}\n')

    assert {meta["key"] for meta in list_envs(cache)} == {a, c}
    assert not (cache / b).exists() and len({a, b, c}) == 3


def test_caches_live_in_mllib_home_else_the_platforms_cache_folder(
    venv_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without MLLIB_ENV_CACHE, venvs and what requirements files and imports resolve to are kept
    in $MLLIB_HOME/cache, else in $XDG_CACHE_HOME/mllib: never in the home folder itself."""
    real_home = Path.home()
    # uv's own cache and this machine's package sources, as the user had them (not mllib's)
    monkeypatch.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or f"{real_home}/.cache/uv")
    if (real_home / ".config" / "pip" / "pip.conf").is_file():
        monkeypatch.setenv("PIP_CONFIG_FILE", f"{real_home}/.config/pip/pip.conf")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MLLIB_ENV_CACHE")
    monkeypatch.setenv("MLLIB_HOME", str(tmp_path / "mllib-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    for cache in (tmp_path / "mllib-home" / "cache", tmp_path / "xdg-cache" / "mllib"):
        result = venv_project.mllib("train", "model.py")
        assert result.returncode == 0, result.output
        assert len(list(cache.glob(f"envs/*/{META_FILE}"))) == 1
        assert list(cache.glob("requirements-*.json")) and list(cache.glob("import-names-*.json"))
        monkeypatch.delenv(
            "MLLIB_HOME", raising=False
        )  # then the platform's folder: $XDG_CACHE_HOME/mllib
    assert not list(home.rglob("*"))
