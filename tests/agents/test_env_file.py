"""The env file an agent writes for a run (.env.remote) reads back exactly what was sent."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agents"))
from mllib_agent.server import write_env_file

from mllib.project import read_env_file

AWKWARD = [
    "p@$$w0rd${HOME}$USER",
    "quotes \" and ' inside",
    "back\\slash \\n not a newline \\",
    "two\nlines\r\nand a tab\t",
    " spaces around ",
    "#not a comment",
    "",
    "ünïcødé",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_the_agents_env_file_round_trips_any_value(tmp_path: Path, value: str):
    path = tmp_path / ".env.remote"
    write_env_file(path, {"SECRET": value, "OTHER": "plain"})
    assert read_env_file(path) == {"SECRET": value, "OTHER": "plain"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
