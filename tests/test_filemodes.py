"""Files that may hold credentials: 0600 from the first byte, written whole, and never written
through a symlink someone planted where mllib writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mllib.filemodes import write_private


def test_a_symlink_planted_at_a_private_file_does_not_redirect_the_write(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("the attacker's file\n")
    target = tmp_path / "secret_params.json"
    target.symlink_to(elsewhere)

    write_private(target, '{"api_key": "s3cret"}')

    assert elsewhere.read_text() == "the attacker's file\n"  # nothing reached the link's target
    assert not target.is_symlink()
    assert target.read_text() == '{"api_key": "s3cret"}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "secret_params.json"]


def test_a_private_file_is_0600_whatever_the_umask_and_a_rewrite_keeps_it_so(tmp_path: Path):
    target = tmp_path / "agents.json"
    target.write_text("old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(target, "new")
    finally:
        os.umask(old_umask)

    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
