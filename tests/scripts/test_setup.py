"""The README's commands set up with scripts/lib/common.sh: a failed install stops them with the
installer's own error and records nothing, and "installed" means the `mllib` command answers.

Each test works on a copy of the project in a temporary folder, with its own venv; uv is the one
scripts/test.sh installed, with its shared cache, so no package is downloaded twice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

BROKEN = "mllib-setup-test-broken"
BUILD_ERROR = f"{BROKEN} cannot be built (on purpose)"


@pytest.fixture
def copy(tmp_path: Path, uv: Path) -> Path:
    """The files an install of mllib reads, copied: what a fresh clone holds."""
    root = tmp_path / "mllib"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mllib", "templates", "scripts", "agents"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(ROOT / name, root / name)
    return root


def set_up(
    root: Path, venv: Path, uv: Path, deps: str = "locked"
) -> subprocess.CompletedProcess[str]:
    """Run ensure_python_env as scripts/quickstart.sh and scripts/test.sh do (with the uv that
    is already installed), for mllib without extras."""
    env = {
        **os.environ,
        "MLLIB_VENV": str(venv),
        "MLLIB_UV_VENV": str(uv.parent.parent),
        "MLLIB_DEPS": deps,
        "UV_COMPILE_BYTECODE": "0",  # half a minute a venv, and nothing here runs much Python
    }
    return subprocess.run(
        ["bash", "-c", 'set -euo pipefail; source scripts/lib/common.sh; ensure_python_env ""'],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def add_broken_requirement(root: Path, uv: Path) -> None:
    """A dependency whose build fails, locked like any other (as a package whose build breaks on
    a new machine would be)."""
    package = root / "broken"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{BROKEN}"\nversion = "1.0"\n'
    )
    (package / "backend.py").write_text(
        f"def fail(*args, **kwargs):\n    raise RuntimeError({BUILD_ERROR!r})\n\n\n"
        "build_wheel = build_editable = build_sdist = fail\n"
    )
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text().replace(
        "dependencies = [\n", f'dependencies = [\n    "{BROKEN}",\n', 1
    )
    pyproject.write_text(text + f'\n[tool.uv.sources]\n{BROKEN} = {{ path = "broken" }}\n')
    locked = subprocess.run(
        [str(uv), "lock", "--project", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert locked.returncode == 0, locked.stderr


def test_a_failed_install_stops_with_the_installers_error_and_writes_no_stamp(copy, tmp_path, uv):
    add_broken_requirement(copy, uv)
    venv = tmp_path / "venv"

    result = set_up(copy, venv, uv)

    assert result.returncode != 0
    assert BUILD_ERROR in result.stderr  # uv's own report, with the build's traceback
    assert "installing mllib failed: uv's error is above" in result.stderr
    assert not (venv / ".mllib-installed").exists()
    assert not (venv / "bin" / "mllib").exists()
    # Run again, it fails again, the same way: nothing was recorded as done.
    again = set_up(copy, venv, uv)
    assert again.returncode != 0 and BUILD_ERROR in again.stderr


def test_a_lock_that_does_not_match_pyproject_stops_the_set_up(copy, tmp_path, uv):
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [\n", 'dependencies = [\n    "six",\n', 1)
    )

    result = set_up(copy, tmp_path / "venv", uv)

    assert result.returncode != 0
    assert "--locked" in result.stderr and "uv lock" in result.stderr  # uv says what to run
    assert not (tmp_path / "venv" / ".mllib-installed").exists()


def test_installed_means_the_mllib_command_answers(copy, tmp_path, uv):
    venv = tmp_path / "venv"
    first = set_up(copy, venv, uv)
    assert first.returncode == 0, first.stderr
    stamp = venv / ".mllib-installed"
    assert stamp.exists()
    version = subprocess.run(
        [str(venv / "bin" / "mllib"), "--version"], cwd=tmp_path, capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("mllib ")

    # A stamp alone proves nothing: with the command gone, the next set-up installs it again.
    (venv / "bin" / "mllib").unlink()
    second = set_up(copy, venv, uv)
    assert second.returncode == 0, second.stderr
    assert "Installing mllib" in second.stderr
    assert (venv / "bin" / "mllib").exists() and stamp.exists()

    # Done and checked: the next set-up is a no-op.
    third = set_up(copy, venv, uv)
    assert third.returncode == 0 and "Installing" not in third.stderr


def test_newest_resolves_afresh_and_writes_the_lock(copy, tmp_path, uv):
    # The weekly CI job: the newest releases pyproject.toml allows, whatever uv.lock says.
    pyproject = copy / "pyproject.toml"
    allowed = pyproject.read_text()
    pyproject.write_text(allowed.replace('"tenacity>=8.2"', '"tenacity>=8.2,<9"'))
    locked = subprocess.run([str(uv), "lock", "--project", str(copy)], capture_output=True)
    assert locked.returncode == 0, locked.stderr
    pyproject.write_text(allowed)  # uv.lock now holds a tenacity 8 that a newer release replaces
    tenacity = re.compile(r'\[\[package\]\]\nname = "tenacity"\nversion = "(\d+)\.')
    assert tenacity.search((copy / "uv.lock").read_text())[1] == "8"
    venv = tmp_path / "venv"

    result = set_up(copy, venv, uv, deps="newest")

    assert result.returncode == 0, result.stderr
    assert "newest dependencies" in result.stderr
    assert int(tenacity.search((copy / "uv.lock").read_text())[1]) >= 9
    assert (venv / ".mllib-installed").exists()
    assert subprocess.run([str(venv / "bin" / "mllib"), "--version"], cwd=tmp_path).returncode == 0


def test_an_unknown_dependency_mode_is_refused(copy, tmp_path, uv):
    result = set_up(copy, tmp_path / "venv", uv, deps="latest")
    assert result.returncode != 0
    assert "MLLIB_DEPS must be locked or newest, not 'latest'" in result.stderr
