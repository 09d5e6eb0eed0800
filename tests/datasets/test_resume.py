"""An uploader killed mid-way (kill -9, Ctrl-C) and run again with the same command sends only what
is missing, says how much it skipped, and never records a partial version."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datasets.helpers import (
    CHUNK_SIZE,
    journal_chunks,
    mllib_cli,
    pattern,
    stored_chunks,
    upload_json,
    wait_for,
)

CHUNKS = 24


def _start_upload(project: Path, source: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mllib", "data", "upload", source, "--name", name, "--json"],
        cwd=project,
        env={**os.environ, "CI": "true", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _no_versions(project: Path) -> bool:
    return json.loads(mllib_cli(project, "data", "list", "--json").stdout) == []


def test_a_file_upload_killed_with_sigkill_resumes_sending_only_missing_chunks(
    project: Path,
) -> None:
    data = pattern(CHUNKS * CHUNK_SIZE)
    (project / "big.bin").write_bytes(data)
    proc = _start_upload(project, "big.bin", "big")
    wait_for(lambda: journal_chunks(project) >= 3 or proc.poll() is not None, interval=0.001)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    assert proc.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    assert _no_versions(project)  # never a partial version
    present = len(stored_chunks(project))
    listed = mllib_cli(project, "data", "list")
    assert f"Interrupted upload of big from {project / 'big.bin'}" in listed.stderr
    assert 3 <= present < CHUNKS

    cli = mllib_cli(project, "data", "upload", "big.bin", "--name", "big")
    assert cli.returncode == 0, cli.stderr
    result = upload_json(project, "big.bin", "--name", "big")  # and once more: nothing at all

    stats_line = next(line for line in cli.stderr.splitlines() if "Stored" in line)
    assert (
        f"in {CHUNKS - present} new chunk(s); skipped {present * 8}.0 MiB already stored"
        in stats_line
    )
    assert len(stored_chunks(project)) == CHUNKS + 1  # every chunk once, and the manifest
    assert not result["created"] and result["bytes_stored"] == 0
    shown = json.loads(mllib_cli(project, "data", "show", "big", "--json").stdout)
    assert shown["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_url_upload_cut_off_resumes_with_a_range_request(project: Path, server, sig) -> None:
    data = pattern(3 * CHUNK_SIZE + 4321)
    server.files["/d.bin"] = data
    server.behaviour.stall_after = 2 * CHUNK_SIZE + 100
    proc = _start_upload(project, server.url("/d.bin"), "d")
    wait_for(lambda: journal_chunks(project) >= 2 or proc.poll() is not None, interval=0.001)
    twice = mllib_cli(project, "data", "upload", server.url("/d.bin"), "--name", "d")
    assert twice.returncode == 2 and "Another upload of 'd'" in twice.stderr
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)

    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Run the same command again to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert _no_versions(project)
    server.behaviour.release.set()  # the server may go on; the client is gone

    result = upload_json(project, server.url("/d.bin"), "--name", "d")

    assert server.requests[-1]["range"] == f"bytes={2 * CHUNK_SIZE}-"
    assert result["created"] and result["bytes_resumed"] == 2 * CHUNK_SIZE
    assert result["bytes_stored"] == len(data) - 2 * CHUNK_SIZE
    shown = json.loads(mllib_cli(project, "data", "show", "d", "--json").stdout)
    assert shown["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list((project / ".mllib" / "store" / "datasets" / "uploads").glob("*"))
