"""The environment a run records: its installed packages read once per environment, and read
again when a package is installed or removed. A real venv made by uv, real installs, a real
worker-side interpreter (the venv's python, mllib's source on its PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DESCRIBE = (
    "import json; from mllib.worker.environment import describe_environment; "
    "e = describe_environment(); print(json.dumps([e['packages'], e['packages_hash']]))"
)


@pytest.fixture
def venv(tmp_path: Path, uv: Path) -> Path:
    path = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, path], check=True)
    return path


def _record(venv: Path, cache: Path) -> tuple[dict[str, str], str]:
    """The packages and their hash, as a run's worker in `venv` records them."""
    done = subprocess.run(
        [venv / "bin" / "python", "-c", DESCRIBE],
        env={**os.environ, "PYTHONPATH": str(ROOT), "MLLIB_ENV_CACHE": str(cache)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    packages, digest = json.loads(done.stdout)
    return packages, digest


def _install(uv: Path, venv: Path, *args: str) -> None:
    subprocess.run(
        [uv, "pip", *args, "-q", "--python", venv / "bin" / "python"], check=True, timeout=300
    )


def test_a_package_installed_after_the_first_record_is_in_the_next(
    venv: Path, uv: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, first_hash = _record(venv, cache)
    (record,) = (cache / "packages").glob("*.json")
    written = record.stat()

    again, again_hash = _record(venv, cache)
    assert (again, again_hash) == (first, first_hash)
    assert "pyyaml" not in first
    # the second run read the record: the file was not written again (a write replaces it)
    assert (record.stat().st_ino, record.stat().st_mtime_ns) == (
        written.st_ino,
        written.st_mtime_ns,
    )
    assert oct(written.st_mode & 0o777) == "0o600"

    _install(uv, venv, "install", "PyYAML")
    installed, installed_hash = _record(venv, cache)
    assert "pyyaml" in installed and installed_hash != first_hash
    assert list((cache / "packages").glob("*.json")) == [record]  # replaced, not one more file

    _install(uv, venv, "uninstall", "PyYAML")
    assert _record(venv, cache) == (first, first_hash)


def test_a_damaged_record_is_read_again_from_the_metadata(
    venv: Path, uv: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _install(uv, venv, "install", "PyYAML")
    expected = _record(venv, cache)
    (record,) = (cache / "packages").glob("*.json")
    record.write_text('{"fingerprint": "')  # e.g. a full disk cut it short

    assert _record(venv, cache) == expected
    assert json.loads(record.read_text())["packages"] == expected[0]


def test_an_unwritable_cache_still_records_the_packages(venv: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the cache cannot be created under a file

    packages, _ = _record(venv, blocked / "cache")
    assert packages == {}


def test_the_fingerprint_ignores_folders_that_install_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker puts the model's folder first on sys.path while its environment thread takes
    the fingerprint: whether it is there yet, or which project it is, must not make one
    environment's runs disagree (each would write the record again). A folder that does hold a
    distribution counts."""
    from mllib.worker.package_cache import fingerprint

    before = fingerprint()
    code = tmp_path / "code"
    (code / "model_pkg").mkdir(parents=True)
    (code / "model.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(code), str(tmp_path / "absent"), *sys.path])
    assert fingerprint() == before
    (code / "extra-1.0.dist-info").mkdir()
    assert fingerprint() != before
