"""What mllib installs is declared, bounded where mllib leans on private APIs, and locked in a
lock file that installs the same anywhere."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# mllib subclasses or overrides their private parts (uvicorn's HttpToolsProtocol, LitServer's
# private methods, LitServe's loops and transport); typer 0.29 imports pydantic on every command.
BOUNDED = {"uvicorn", "litserve", "starlette", "typer"}


def _requirements() -> dict[str, Requirement]:
    return {
        Requirement(line).name: Requirement(line) for line in PYPROJECT["project"]["dependencies"]
    }


def test_every_imported_package_is_declared():
    deptry = Path(sys.executable).parent / "deptry"
    result = subprocess.run(
        [str(deptry), "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No dependency issues found" in result.stdout + result.stderr


def test_packages_used_through_private_apis_have_an_upper_bound():
    requirements = _requirements()
    for name in BOUNDED:
        assert any(s.operator in ("<", "<=", "==", "~=") for s in requirements[name].specifier), (
            f"{name} needs an upper bound in pyproject.toml: {requirements[name]}"
        )


def test_the_lock_matches_pyproject(uv):
    # --offline: the check reads pyproject.toml and uv.lock only, no index.
    result = subprocess.run(
        [str(uv), "lock", "--check", "--offline", "--project", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_lock_installs_the_same_on_any_machine():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for package in lock["package"]:
        source = package["source"]
        where = f"{package['name']} {package.get('version', '')}: {source}"
        if package["name"] == "mllib":
            assert source == {"editable": "."}, where
            continue
        # From the public index by URL and hash; nothing from this machine's disk or a mirror.
        assert source == {"registry": "https://pypi.org/simple"}, where
        for dist in [package.get("sdist", {}), *package.get("wheels", [])]:
            if dist:
                assert dist["url"].startswith("https://files.pythonhosted.org/"), where
                assert dist["hash"].startswith("sha256:"), where
