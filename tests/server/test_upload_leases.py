"""An upload to the team server against `mllib data rm` racing it, on SQLite and on PostgreSQL:
what the server told the upload it has is kept until the version is recorded (its lease), a chunk
lost anyway is sent again by the client, and a lease left by a server killed mid-upload expires
and is collected by the server itself.

Real processes throughout: the `mllib data upload` command runs on its own, through a proxy that
holds its last request (the version's record, POST /api/v1/datasets) so the test removes a
dataset at exactly that point, the way a teammate's `mllib data rm` would land."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.server.test_datasets import CHUNK, stored_chunks
from tests.slow_proxy import SlowProxy

RECORD = b"POST /api/v1/datasets HTTP"  # the request that records the uploaded version
DAY_S = 86400


@pytest.fixture
def proxy(team_server):
    slow = SlowProxy(team_server.port)
    yield slow
    slow.close()


def log_in_through(project: Project, proxy: SlowProxy, server, user: str) -> None:
    result = project.mllib("login", proxy.url, input=server.tokens[user] + "\n")
    assert result.returncode == 0, result.output


def dataset_folder(project: Project, name: str, files: dict[str, bytes]) -> str:
    root = project.root.parent / name
    root.mkdir()
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return str(root)


def upload_held_at_record(project: Project, proxy: SlowProxy, source: str, name: str):
    """`mllib data upload SOURCE --name NAME --json`, running, held just before its record: every
    chunk is announced and sent, the server has answered what it has."""
    proxy.hold(RECORD)
    process = subprocess.Popen(
        [sys.executable, "-m", "mllib", "data", "upload", source, "--name", name, "--json"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while proxy.waiting < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the upload never reached its record:\n{out}\n{err}")
        time.sleep(0.02)
    return process


def held_upload(project: Project, proxy: SlowProxy, server, user: str, name: str):
    """A new user uploading a folder of one new file (`data.bin`) as `name`, held before its
    record: (the running upload, the file's bytes, the folder)."""
    server.add_user(user)
    body = os.urandom(5000)
    source = dataset_folder(project, name, {"data.bin": body})
    log_in_through(project, proxy, server, user)
    return upload_held_at_record(project, proxy, source, name), body, source


def finish(process: subprocess.Popen, proxy: SlowProxy) -> tuple[int, str, str]:
    proxy.release()
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def read_back(server, user: str, ref: str) -> dict[str, bytes]:
    """A version's files as the server serves them: its manifest, then every chunk over HTTP."""
    from mllib.datasets.manifest import Manifest

    with server.client(user) as http:
        version = http.get(f"/api/v1/datasets/{ref}", params={"files": False}).json()
        raw = http.get(f"/api/v1/datasets/chunks/{version['sha256']}").content
        files = {}
        for entry in Manifest.from_bytes(raw).files:
            chunks = [http.get(f"/api/v1/datasets/chunks/{d}") for d in entry.chunks]
            assert all(c.status_code == 200 for c in chunks), [c.status_code for c in chunks]
            files[entry.path] = b"".join(c.content for c in chunks)
    return files


def leases(server) -> list[Path]:
    folder = server.home / "store" / "datasets" / "leases"
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_data_rm_racing_an_upload_frees_nothing_the_upload_was_told_is_there(
    model_project: Project, team_server, proxy
):
    team_server.add_user("ivy")
    big = os.urandom(CHUNK + 1000)  # two chunks, in both datasets
    only_base = os.urandom(5000)
    base = dataset_folder(model_project, "base", {"big.bin": big, "only.bin": only_base})
    log_in_through(model_project, proxy, team_server, "ivy")
    first = model_project.mllib("data", "upload", base, "--name", "base", "--json")
    assert first.returncode == 0, first.output
    shared = {sha(big[:CHUNK]), sha(big[CHUNK:])}

    new = os.urandom(3000)
    derived = dataset_folder(model_project, "derived", {"big.bin": big, "new.bin": new})
    upload = upload_held_at_record(model_project, proxy, derived, "derived")
    assert shared <= stored_chunks(team_server)  # the upload was told the server has them

    # an admin removes `base` now: what only base held goes, what the upload relies on stays
    before = stored_chunks(team_server)
    with team_server.client("ana") as http:
        removed = http.delete("/api/v1/datasets/base")
    assert removed.status_code == 200, removed.text
    freed = before - stored_chunks(team_server)
    assert removed.json()["deferred"] is False and removed.json()["chunks_freed"] == len(freed)
    assert {first.json()["sha256"], sha(only_base)} <= freed  # base's manifest and only.bin
    assert shared <= stored_chunks(team_server)

    code, out, err = finish(upload, proxy)
    assert code == 0, err
    data = json.loads(out)
    assert data["ref"] == "derived@1" and data["created"] is True
    assert data["chunks_skipped"] == 2 and data["chunks_stored"] == 1  # new.bin
    assert read_back(team_server, "ivy", "derived@1") == {"big.bin": big, "new.bin": new}
    assert leases(team_server) == []  # recorded: the version holds its chunks now

    # nothing pins them any more: removing derived frees the shared chunks too
    with team_server.client("ivy") as http:
        assert http.delete("/api/v1/datasets/derived").status_code == 200
    assert not shared & stored_chunks(team_server)


def test_a_chunk_lost_before_the_record_is_a_409_the_client_answers_by_sending_it_again(
    model_project: Project, team_server, proxy
):
    from mllib.datasets.chunkstore import dataset_store

    upload, body, _ = held_upload(model_project, proxy, team_server, "jo", "lost")
    dataset_store(team_server.home / "store").delete(sha(body))  # a disk that lost it
    code, _, err = finish(upload, proxy)
    assert code == 0, err
    assert "1 chunk(s) went missing from the team server" in err and "sending them again" in err
    assert read_back(team_server, "jo", "lost@1") == {"data.bin": body}

    # the API's answer to a record with chunks absent: 409 naming them, nothing recorded
    from mllib.datasets.manifest import FILE, FileEntry, Manifest

    absent = os.urandom(100)
    manifest = Manifest(FILE, (FileEntry("x.bin", 100, sha(absent), (sha(absent),)),))
    raw = manifest.to_bytes()
    with team_server.client("jo") as http:
        assert http.put(f"/api/v1/datasets/chunks/{sha(raw)}", content=raw).status_code == 204
        answer = http.post("/api/v1/datasets", json={"name": "absent", "manifest": sha(raw)})
        assert answer.status_code == 409, answer.text
        assert answer.json()["missing"] == [sha(absent)]
        assert "missing" in answer.json()["error"] and answer.json()["hint"]
        assert http.get("/api/v1/datasets/absent").status_code == 404
    assert leases(team_server) == []  # the record's own lease went with it


def test_a_lease_left_by_a_server_killed_mid_upload_expires_and_the_server_frees_its_chunks(
    model_project: Project, team_server, proxy
):
    upload, body, source = held_upload(model_project, proxy, team_server, "kay", "orphan")
    try:
        os.killpg(upload.pid, 9)  # the laptop goes
        upload.communicate(timeout=30)
        team_server.kill()  # and the server, kill -9
    finally:
        proxy.release()
        team_server.start()
    (orphaned,) = leases(team_server)  # the killed upload's lease, still pinning its chunks

    # the same command again: resumes, sends nothing the server has, and is recorded
    again = model_project.mllib("data", "upload", source, "--name", "orphan", "--json")
    assert again.returncode == 0, again.output
    assert again.json()["ref"] == "orphan@1" and again.json()["bytes_stored"] == 0
    assert leases(team_server) == [orphaned]

    # removing the version keeps the chunk the killed upload's lease pins...
    with team_server.client("kay") as http:
        assert http.delete("/api/v1/datasets/orphan").status_code == 200
    assert sha(body) in stored_chunks(team_server)
    # ...until that lease has gone unused past upload_expiry_h (24 h): the server's own sweep
    # (at start, then every 10 minutes) removes it and frees the chunk, with no `data rm`
    old = time.time() - DAY_S - 60
    os.utime(orphaned, (old, old))
    team_server.stop()
    team_server.start()
    deadline = time.monotonic() + 60
    while sha(body) in stored_chunks(team_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sha(body) not in stored_chunks(team_server)
    assert leases(team_server) == []
    assert "of abandoned uploads" in team_server.log()  # the server says what it freed
