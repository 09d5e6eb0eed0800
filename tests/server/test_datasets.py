"""Datasets on the team server, through the real `mllib` command and real HTTP, on SQLite and on
PostgreSQL: an upload sends only the chunks the server lacks (whoever uploaded them first), the
team shares one catalog whose names belong to their first uploader, `--data` on a server run
binds the server's versions, and bad input is a one-line 4xx (an unknown dataset, an upload over
the server's limit). Runs that read the data on an agent: tests/agents/test_team_server.py."""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest

from tests.conftest import Project
from tests.server.test_api import login, submit_detached

CHUNK = 8 * 1024 * 1024


def folder(project: Project, name: str, big: bytes) -> str:
    """A dataset folder outside the project (so not part of its code snapshot)."""
    root = project.root.parent / name
    (root / "cats").mkdir(parents=True, exist_ok=True)
    (root / "cats" / "a.txt").write_text("cat a\n")
    (root / "big.bin").write_bytes(big)
    return str(root)


def stored_chunks(server) -> set[str]:
    from mllib.datasets.chunkstore import dataset_store

    return set(dataset_store(server.home / "store").digests())


def test_an_upload_sends_only_what_the_server_lacks_and_the_team_shares_it(
    model_project: Project, team_server
):
    team_server.add_user("di")
    team_server.add_user("ed")
    big = os.urandom(CHUNK + 1000)  # two chunks
    source = folder(model_project, "images", big)
    login(model_project, team_server, "di")
    first = model_project.mllib("data", "upload", source, "--name", "images", "--json")
    assert first.returncode == 0, first.output
    data = first.json()
    assert data["ref"] == "images@1" and data["user"] == "di" and data["created"] is True
    assert data["chunks_stored"] == 3 and data["bytes_stored"] == len(big) + 6
    assert f"to the team server {team_server.url}" in first.stderr
    # the same --json keys as a local upload
    local = model_project.mllib("data", "upload", source, "--name", "images", "--json", "--local")
    assert local.returncode == 0, local.output
    assert set(local.json()) == set(data)
    # the chunks (and the manifest) are in the server's store, where its dispatcher reads them
    chunk_shas = {hashlib.sha256(big[:CHUNK]).hexdigest(), hashlib.sha256(big[CHUNK:]).hexdigest()}
    assert chunk_shas | {data["sha256"]} <= stored_chunks(team_server)

    # the same bytes again, by another user under another name: nothing is sent
    login(model_project, team_server, "ed")
    again = model_project.mllib("data", "upload", source, "--name", "pets", "--json")
    assert again.returncode == 0, again.output
    assert again.json()["bytes_stored"] == 0 and again.json()["chunks_skipped"] == 3
    assert "Sent 0 B: every chunk was already in the team server" in again.stderr

    # one catalog for the team: ed lists and shows di's dataset, with its uploader
    listed = {d["name"]: d for d in model_project.mllib("data", "list", "--json").json()}
    assert listed["images"]["user"] == "di" and listed["pets"]["user"] == "ed"
    shown = model_project.mllib("data", "show", "images", "--json").json()
    assert shown["sha256"] == data["sha256"] and shown["versions"] == [1]
    assert sorted(f["path"] for f in shown["files"]) == ["big.bin", "cats/a.txt"]
    table = model_project.mllib("data", "list")
    assert "images" in table.stdout and "di" in table.stdout
    # the local catalog is apart: --local reads this project's
    local_list = model_project.mllib("data", "list", "--json", "--local").json()
    assert [d["name"] for d in local_list] == ["images"]

    # a name belongs to its first uploader: ed cannot add a version to di's images
    (model_project.root.parent / "images" / "new.txt").write_text("new\n")
    refused = model_project.mllib("data", "upload", source, "--name", "images")
    assert refused.returncode == 1, refused.output
    assert "belongs to di" in refused.stderr and len(refused.stderr.strip().splitlines()) == 2
    # di can (and an admin could): version 2
    login(model_project, team_server, "di")
    second = model_project.mllib("data", "upload", source, "--name", "images", "--json")
    assert second.returncode == 0 and second.json()["ref"] == "images@2", second.output
    assert second.json()["chunks_stored"] == 1 and second.json()["chunks_skipped"] == 3
    # ed cannot remove di's dataset either
    login(model_project, team_server, "ed")
    rm = model_project.mllib("data", "rm", "images@1")
    assert rm.returncode == 1 and "belongs to di" in rm.stderr
    assert len(rm.stderr.strip().splitlines()) == 2


def test_data_rm_on_the_server_frees_what_no_other_version_uses_never_what_a_run_reads(
    model_project: Project, team_server
):
    team_server.add_user("gus")
    team_server.add_user("hal")
    big = os.urandom(CHUNK + 1000)
    root = model_project.root.parent / "logs"
    root.mkdir()
    (root / "big.bin").write_bytes(big)
    (root / "note.txt").write_bytes(os.urandom(100))
    login(model_project, team_server, "gus")
    one = model_project.mllib("data", "upload", str(root), "--name", "logs", "--json").json()
    (root / "extra.txt").write_bytes(os.urandom(100))
    two = model_project.mllib("data", "upload", str(root), "--name", "logs", "--json").json()
    assert (one["ref"], two["ref"]) == ("logs@1", "logs@2")
    mine = submit_detached(model_project, "--data", "DATA_PATH=logs@2")

    refused = model_project.mllib("data", "rm", "logs@2")  # a queued run reads it
    assert refused.returncode == 2 and mine in refused.stderr, refused.output
    assert len(refused.stderr.strip().splitlines()) == 2
    login(model_project, team_server, "hal")  # not hal's to remove; hal may train on it
    not_yours = model_project.mllib("data", "rm", "logs@2")
    assert not_yours.returncode == 1 and "belongs to gus" in not_yours.stderr
    theirs = submit_detached(model_project, "--data", "DATA_PATH=logs@2")
    login(model_project, team_server, "gus")  # hal's run is counted, never named, to gus
    refused = model_project.mllib("data", "rm", "logs")
    assert refused.returncode == 2 and mine in refused.stderr and theirs not in refused.stderr
    assert "1 of other users" in refused.stderr
    assert model_project.mllib("data", "show", "logs@2").returncode == 0  # nothing went
    assert model_project.mllib("runs", "cancel", mine).returncode == 0
    with team_server.client("hal") as http:
        assert http.post(f"/api/v1/runs/{theirs}/cancel").status_code == 200

    # logs@1 goes: its manifest alone is freed, every chunk is logs@2's too
    before = stored_chunks(team_server)
    removed = model_project.mllib("data", "rm", "logs@1", "--json")
    assert removed.returncode == 0, removed.output
    assert removed.json() == {
        "removed": [{"name": "logs", "version": 1, "sha256": one["sha256"]}],
        "chunks_freed": 1,
        "bytes_freed": removed.json()["bytes_freed"],
        "deferred": False,
    }
    assert before - stored_chunks(team_server) == {one["sha256"]}
    assert model_project.mllib("data", "show", "logs@1").returncode == 4
    # the same --json keys as a local removal
    local = model_project.mllib("data", "upload", str(root), "--name", "logs", "--local")
    assert local.returncode == 0, local.output
    local_rm = model_project.mllib("data", "rm", "logs", "--local", "--json")
    assert local_rm.returncode == 0 and set(local_rm.json()) == set(removed.json())

    # an admin removes any dataset: every chunk only logs@2 held is freed
    login(model_project, team_server, "ana")
    before = stored_chunks(team_server)
    last = model_project.mllib("data", "rm", "logs", "--json")
    assert last.returncode == 0, last.output
    freed = before - stored_chunks(team_server)
    chunks = {hashlib.sha256(big[:CHUNK]).hexdigest(), hashlib.sha256(big[CHUNK:]).hexdigest()}
    assert chunks | {two["sha256"]} <= freed and last.json()["chunks_freed"] == len(freed)
    assert last.json()["removed"] == [{"name": "logs", "version": 2, "sha256": two["sha256"]}]
    assert "logs" not in {d["name"] for d in model_project.mllib("data", "list", "--json").json()}


def test_data_on_a_server_run_binds_the_servers_versions(model_project: Project, team_server):
    team_server.add_user("fay")
    login(model_project, team_server, "fay")
    source = folder(model_project, "tables", b"a,b\n1,2\n")
    assert model_project.mllib("data", "upload", source, "--name", "tables").returncode == 0
    run_id = submit_detached(model_project, "--data", "DATA_PATH=tables@1")
    shown = model_project.mllib("runs", "show", run_id, "--json").json()
    assert [(d["env"], d["name"], d["version"]) for d in shown["datasets"]] == [
        ("DATA_PATH", "tables", 1)
    ]
    # the server's record links them (its dispatcher sends the agent their chunks)
    with team_server.client("fay") as http:
        on_server = http.get(f"/api/v1/runs/{run_id}").json()
        assert on_server["datasets"][0]["name"] == "tables"
        runs = http.get("/api/v1/datasets/tables@1").json()["runs"]
        assert runs == [{"run_id": run_id, "env": "DATA_PATH"}]
    with team_server.client("bo") as http:  # bo sees the dataset, not fay's run
        assert http.get("/api/v1/datasets/tables").json()["runs"] == []
    # a rerun on the server reads exactly the same versions
    again = model_project.mllib("runs", "rerun", run_id, "--detach")
    assert again.returncode == 0, again.output
    rerun_id = again.stdout.strip().splitlines()[-1]
    rerun = model_project.mllib("runs", "show", rerun_id, "--json").json()
    assert [(d["name"], d["version"]) for d in rerun["datasets"]] == [("tables", 1)]


def test_an_unknown_dataset_is_a_one_line_error_and_nothing_is_recorded(
    model_project: Project, team_server
):
    login(model_project, team_server, "bo")
    code_tree = model_project.show(submit_detached(model_project))["code_hash"]
    before = model_project.mllib("runs", "list", "--json", "--local").json()
    result = model_project.mllib("train", "model.py", "--remote", "--data", "train=nope@2")
    assert result.returncode == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert "No dataset nope@2" in lines[-2] and "data list" in lines[-1]
    assert model_project.mllib("runs", "list", "--json", "--local").json() == before
    with team_server.client("bo") as http:  # a client that skips the lookup: 400, one line
        body = {
            "run_id": "nodata000001",
            "idempotency_key": "nodata-000001",
            "model": "m",
            "action": "train",
            "model_class": "Basic",
            "model_file": "model.py",
            "code_tree": code_tree,
            "spec": {"actions": ["train"], "model_file": "model.py", "model_class": "Basic"},
            "datasets": [{"env": "TRAIN_DATA", "name": "nope", "version": 1}],
        }
        refused = http.post("/api/v1/runs", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "No dataset nope@1 on the team server"
        assert http.get("/api/v1/runs/nodata000001").status_code == 404


def test_an_upload_over_the_servers_limit_is_413_before_anything_is_sent(
    model_project: Project, team_server
):
    login(model_project, team_server, "bo")
    huge = model_project.root.parent / "huge.bin"
    with open(huge, "wb") as handle:  # sparse: 101 GB that take no disk
        handle.truncate(101 * 10**9)
    result = model_project.mllib(
        "data", "upload", str(huge), "--name", "huge", "--max-size-gb", "1000"
    )
    assert result.returncode == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert "larger than the team server's dataset limit of 100 GB" in lines[-2]
    assert "--max-dataset-gb" in lines[-1]
    with team_server.client("bo") as http:
        answer = http.post("/api/v1/datasets/check", json={"name": "huge", "size": 101 * 10**9})
        assert answer.status_code == 413 and "100 GB" in answer.json()["error"]
        assert http.get("/api/v1/datasets/huge").status_code == 404
        # a client that skips the check: its manifest is refused when it is recorded
        size = 101 * 10**9
        chunks = ["a" * 64] * -(-size // CHUNK)
        manifest = json.dumps(
            {
                "format": 1,
                "kind": "file",
                "chunk_size": CHUNK,
                "files": [
                    {"path": "x", "size": size, "sha256": "b" * 64, "chunks": chunks,
                     "executable": False}
                ],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()  # fmt: skip
        sha = hashlib.sha256(manifest).hexdigest()
        put = http.put(f"/api/v1/datasets/chunks/{sha}", content=manifest)
        assert put.status_code == 204
        recorded = http.post("/api/v1/datasets", json={"name": "huge", "manifest": sha})
        assert recorded.status_code == 413 and "100 GB" in recorded.json()["error"]


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/v1/datasets", None),
        ("GET", "/api/v1/datasets/images", None),
        ("POST", "/api/v1/datasets/chunks/missing", {"shas": []}),
        ("POST", "/api/v1/datasets", {"name": "x", "manifest": "0" * 64}),
    ],
)
def test_dataset_endpoints_need_a_token(team_server, method, path, body):
    answer = httpx.request(method, f"{team_server.url}{path}", json=body)
    assert answer.status_code == 401 and answer.json()["error"]


def test_dataset_endpoints_are_documented(team_server):
    schema = httpx.get(f"{team_server.url}/openapi.json").json()
    assert {
        "/api/v1/datasets",
        "/api/v1/datasets/{ref}",
        "/api/v1/datasets/check",
        "/api/v1/datasets/chunks/missing",
        "/api/v1/datasets/chunks/{sha256}",
    } <= set(schema["paths"])
    assert "413" in schema["paths"]["/api/v1/datasets"]["post"]["responses"]
    assert "datasets" in schema["components"]["schemas"]["SubmissionBody"]["properties"]


def test_malformed_dataset_requests_are_4xx(team_server):
    with team_server.client("bo") as http:
        assert http.put(f"/api/v1/datasets/chunks/{'0' * 64}", content=b"x").status_code == 400
        assert http.get("/api/v1/datasets/bad name").status_code == 400
        assert http.get(f"/api/v1/datasets/chunks/{'0' * 64}").status_code == 404
        missing_manifest = http.post("/api/v1/datasets", json={"name": "m", "manifest": "1" * 64})
        assert missing_manifest.status_code == 400
        assert http.post("/api/v1/datasets/check", json={"name": "../x"}).status_code == 400
