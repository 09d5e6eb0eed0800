"""Env files: values are taken as written (no `${VAR}` expansion)."""

from __future__ import annotations

from pathlib import Path

from mllib.project import read_env_file


def test_a_user_written_env_file_is_not_interpolated(tmp_path: Path):
    path = tmp_path / ".env.local"
    path.write_text("TOKEN=ab$cd${HOME}\nQUOTED='x${USER}y'\nDOUBLE=\"p$1\"\n")
    assert read_env_file(path) == {"TOKEN": "ab$cd${HOME}", "QUOTED": "x${USER}y", "DOUBLE": "p$1"}
