"""The secrets a team server keeps for its schedules (mllib.server.sealed): ciphertext only, under
a 0600 key made at first use, and a one-line error naming the key file when the key changed."""

from __future__ import annotations

import stat

import pytest

from mllib.errors import MllibError
from mllib.server.sealed import KEY_FILE, seal, unseal
from mllib.server.settings import ServerHome


def test_sealed_values_read_back_and_hold_no_plain_text(tmp_path):
    home = ServerHome(tmp_path)
    token = seal(home, {"API_TOKEN": "t0k-plain"})
    assert token and "t0k-plain" not in token and "API_TOKEN" not in token
    assert unseal(home, token) == {"API_TOKEN": "t0k-plain"}
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert seal(home, {}) is None and unseal(home, None) == {}
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no draft left beside it


def test_another_key_is_a_clear_error_without_the_values(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # two servers' homes, each with its own key
    token = seal(ServerHome(tmp_path / "a"), {"API_TOKEN": "t0k-plain"})
    with pytest.raises(MllibError) as raised:
        unseal(ServerHome(tmp_path / "b"), token)
    assert "sealed with another key than" in raised.value.message
    assert str(tmp_path / "b" / KEY_FILE) in raised.value.message
    assert "t0k-plain" not in str(raised.value)
