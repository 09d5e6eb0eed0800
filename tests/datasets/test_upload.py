"""Uploading files and folders: versions, content hashes, deduplication, and the `mllib data` CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mllib import datasets
from mllib.errors import NotFoundError, UsageError
from tests.datasets.helpers import (
    CHUNK_SIZE,
    MIB,
    mllib_cli,
    pattern,
    stored_chunks,
    upload_json,
    write_config,
)


def test_a_file_becomes_version_1_whose_sha256_matches_the_file(ws, project: Path) -> None:
    data = pattern(2 * CHUNK_SIZE + 123)
    (project / "train.bin").write_bytes(data)

    result = datasets.upload(project / "train.bin", "train", ws=ws)

    assert result.created and result.version.ref == "train@1"
    assert result.stats.chunks_stored == 3 and result.stats.bytes_stored == len(data)
    shown = datasets.show("train", ws=ws)
    assert shown["kind"] == "file" and shown["size"] == len(data)
    assert shown["files"] == [
        {
            "path": "train.bin",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "chunks": 3,
        }
    ]


def test_uploading_identical_content_again_stores_nothing(ws, project: Path) -> None:
    (project / "a.bin").write_bytes(pattern(CHUNK_SIZE + 5))
    first = datasets.upload(project / "a.bin", "a", ws=ws)
    before = stored_chunks(project)

    again = datasets.upload(project / "a.bin", "a", ws=ws)
    other_name = datasets.upload(project / "a.bin", "b", ws=ws)

    assert not again.created and again.version == first.version
    assert again.stats.bytes_stored == 0 and again.stats.chunks_skipped == 2
    assert other_name.created and other_name.stats.bytes_stored == 0
    assert other_name.version.sha256 == first.version.sha256
    assert stored_chunks(project) == before


def test_a_changed_file_stores_only_its_changed_chunks(ws, project: Path) -> None:
    data = bytearray(pattern(3 * CHUNK_SIZE))
    path = project / "a.bin"
    path.write_bytes(data)
    datasets.upload(path, "a", ws=ws)
    data[CHUNK_SIZE + 10] ^= 0xFF  # one byte in the second chunk
    path.write_bytes(data)

    result = datasets.upload(path, "a", ws=ws)

    assert result.version.ref == "a@2"
    assert (result.stats.chunks_stored, result.stats.chunks_skipped) == (1, 2)


def test_a_folder_keeps_its_structure_and_modes(ws, project: Path) -> None:
    src = project / "images"
    (src / "cats" / "small").mkdir(parents=True)
    (src / "cats" / "small" / "tom.jpg").write_bytes(b"meow")
    (src / "dogs.csv").write_text("rex\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "empty.txt").write_bytes(b"")

    datasets.upload(src, "images", ws=ws)

    shown = datasets.show("images@1", ws=ws)
    assert shown["kind"] == "folder"
    assert [f["path"] for f in shown["files"]] == [
        "cats/small/tom.jpg",
        "dogs.csv",
        "empty.txt",
        "run.sh",
    ]
    assert shown["file_count"] == 4 and shown["size"] == 4 + 4 + 10


def test_same_files_give_the_same_version_digest_wherever_they_are(
    ws, project: Path, tmp_path
) -> None:
    for folder in (project / "one", tmp_path / "two"):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x.txt").write_text("x")
        (folder / "y.txt").write_text("y")
    first = datasets.upload(project / "one", "one", ws=ws)
    second = datasets.upload(tmp_path / "two", "two", ws=ws)
    assert first.version.sha256 == second.version.sha256


def test_bad_names_and_missing_things_are_clear_errors(ws, project: Path) -> None:
    (project / "a.txt").write_text("a")
    with pytest.raises(UsageError, match="not a valid dataset name"):
        datasets.upload(project / "a.txt", "../etc", ws=ws)
    with pytest.raises(NotFoundError, match="No file or folder"):
        datasets.upload(project / "nope.txt", "a", ws=ws)
    with pytest.raises(NotFoundError, match="No dataset a@3"):
        datasets.show("a@3", ws=ws)
    (project / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no files"):
        datasets.upload(project / "empty", "e", ws=ws)


def test_cli_upload_list_show_rm(project: Path) -> None:
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_bytes(pattern(MIB))

    up = mllib_cli(project, "data", "upload", "data", "--name", "xs")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == "xs@1"
    assert "Uploaded xs@1" in up.stderr and "Stored 1.0 MiB in 1 new chunk" in up.stderr
    assert "Uploading xs" in up.stderr  # plain progress lines under CI=true

    again = mllib_cli(project, "data", "upload", "data", "--name", "xs")
    assert "xs@1 already holds this content" in again.stderr
    assert "Stored 0 B" in again.stderr

    listed = json.loads(mllib_cli(project, "data", "list", "--json").stdout)
    assert [(d["name"], d["version"], d["versions"], d["file_count"]) for d in listed] == [
        ("xs", 1, 1, 1)
    ]
    assert "xs" in mllib_cli(project, "data", "list").stdout

    shown = mllib_cli(project, "data", "show", "xs@1", "--json")
    assert json.loads(shown.stdout)["files"][0]["path"] == "x.csv"
    assert "x.csv" in mllib_cli(project, "data", "show", "xs").stdout

    removed = mllib_cli(project, "data", "rm", "xs")
    assert removed.returncode == 0, removed.stderr
    assert "Removed xs@1" in removed.stderr and "Freed 1.0 MiB" in removed.stderr
    assert stored_chunks(project) == set()
    missing = mllib_cli(project, "data", "show", "xs")
    assert missing.returncode == 4 and "No dataset xs" in missing.stderr


def test_rm_one_version_keeps_the_others_and_numbers_are_not_reused(project: Path) -> None:
    (project / "v.txt").write_text("one")
    upload_json(project, "v.txt", "--name", "v")
    (project / "v.txt").write_text("two")
    upload_json(project, "v.txt", "--name", "v")

    removed = mllib_cli(project, "data", "rm", "v@2", "--json")
    assert removed.returncode == 0, removed.stderr
    answer = json.loads(removed.stdout)
    assert set(answer) == {"removed", "chunks_freed", "bytes_freed", "deferred"}
    assert [(v["name"], v["version"]) for v in answer["removed"]] == [("v", 2)]
    assert answer["chunks_freed"] >= 1 and answer["bytes_freed"] > 0 and not answer["deferred"]
    (project / "v.txt").write_text("three")
    third = upload_json(project, "v.txt", "--name", "v")

    assert third["ref"] == "v@3"
    [listed] = json.loads(mllib_cli(project, "data", "list", "--json").stdout)
    assert third["versions"] == listed["versions"] == 2  # v@1 and v@3
    assert set(listed) <= set(third)  # upload --json has every key of data list --json
    shown = json.loads(mllib_cli(project, "data", "show", "v", "--json").stdout)
    assert shown["versions"] == [1, 3]
    assert mllib_cli(project, "data", "show", "v@2").returncode == 4


def test_upload_json_reports_what_was_stored(project: Path) -> None:
    (project / "a.bin").write_bytes(pattern(CHUNK_SIZE + 1))
    first = upload_json(project, "a.bin", "--name", "a")
    second = upload_json(project, "a.bin", "--name", "a")
    assert first["created"] and first["bytes_stored"] == CHUNK_SIZE + 1
    assert not second["created"] and second["bytes_stored"] == 0
    assert second["bytes_skipped"] == CHUNK_SIZE + 1


def test_size_cap_refuses_a_local_upload_before_reading_it(project: Path) -> None:
    write_config(project, max_size_gb=0.001)  # 1 MB
    (project / "data").mkdir()
    (project / "data" / "a.bin").write_bytes(pattern(600_000))
    (project / "data" / "b.bin").write_bytes(pattern(600_000, seed=1))

    cli = mllib_cli(project, "data", "upload", "data", "--name", "d")

    assert cli.returncode == 2
    assert "(1.1 MiB) is larger than the dataset size limit of 0.001 GB" in cli.stderr
    assert stored_chunks(project) == set()
    assert not (project / ".mllib" / "store" / "datasets" / "uploads").exists()
    allowed = mllib_cli(project, "data", "upload", "data", "--name", "d", "--max-size-gb", "0.01")
    assert allowed.returncode == 0, allowed.stderr


def test_uploading_the_project_folder_leaves_mllib_state_out(ws, project: Path) -> None:
    (project / "notes.txt").write_text("n")
    (project / "a.bin").write_bytes(pattern(1000))
    datasets.upload(project / "a.bin", "first", ws=ws)  # .mllib now exists, with a store

    datasets.upload(project, "everything", ws=ws)

    paths = [f["path"] for f in datasets.show("everything", ws=ws)["files"]]
    assert paths == ["a.bin", "mllib.toml", "notes.txt"]


def test_other_url_schemes_are_refused_clearly(ws) -> None:
    with pytest.raises(UsageError, match="ftp:// URLs are not supported"):
        datasets.upload("ftp://example.org/data.csv", "f", ws=ws)
