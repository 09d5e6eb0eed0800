"""Paths stay inside their dataset: symlinks, special files and crafted manifests, on upload and restore."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mllib import datasets
from mllib.datasets.chunkstore import dataset_store
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.manifest import ManifestError
from mllib.datasets.materialize import materialize
from mllib.errors import UsageError
from tests.datasets.helpers import mllib_cli, stored_chunks, upload_json


def test_a_symlink_pointing_outside_the_folder_is_refused(ws, project: Path, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    src = project / "data"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    (src / "leak.txt").symlink_to(secret)

    with pytest.raises(UsageError, match=r"leak\.txt is a symlink to .*outside the folder"):
        datasets.upload(src, "d", ws=ws)
    assert stored_chunks(project) == set()

    cli = mllib_cli(project, "data", "upload", "data", "--name", "d")
    assert cli.returncode == 2 and "outside the folder being uploaded" in cli.stderr


def test_a_symlinked_folder_pointing_outside_is_refused(ws, project: Path, tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_text("x")
    src = project / "data"
    src.mkdir()
    (src / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="outside the folder"):
        datasets.upload(src, "d", ws=ws)


def test_symlinks_inside_the_folder_are_stored_as_their_content(ws, project: Path) -> None:
    src = project / "data"
    (src / "real").mkdir(parents=True)
    (src / "real" / "a.txt").write_text("a")
    (src / "alias.txt").symlink_to(src / "real" / "a.txt")
    datasets.upload(src, "d", ws=ws)
    files = {f["path"]: f["sha256"] for f in datasets.show("d", ws=ws)["files"]}
    assert files["alias.txt"] == files["real/a.txt"] == hashlib.sha256(b"a").hexdigest()


def test_a_symlink_loop_is_an_error_not_a_hang(ws, project: Path) -> None:
    src = project / "data"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "again").symlink_to(src)
    with pytest.raises(UsageError, match="Symlink loop"):
        datasets.upload(src, "d", ws=ws)


def test_a_fifo_is_refused_instead_of_read(ws, project: Path) -> None:
    src = project / "data"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(UsageError, match="pipe is not a regular file"):
        datasets.upload(src, "d", ws=ws)


def _plant_manifest(ws, files: list[dict], kind: str = "folder") -> str:
    """A manifest as a hostile or corrupted store could hold it, stored under its own digest."""
    store = dataset_store(ws.project.store_path)
    raw = json.dumps({"format": 1, "kind": kind, "chunk_size": 8388608, "files": files}).encode()
    digest = hashlib.sha256(raw).hexdigest()
    store.put(raw, digest)
    return digest


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/etc/evil", "a/../../b", "./a", "a//b", "a\\..\\b"]
)
def test_restore_refuses_paths_that_leave_the_dataset(ws, tmp_path, path: str) -> None:
    store = dataset_store(ws.project.store_path)
    store.put(b"x", hashlib.sha256(b"x").hexdigest())
    digest = _plant_manifest(
        ws,
        [
            {
                "path": path,
                "size": 1,
                "sha256": "0" * 64,
                "chunks": [hashlib.sha256(b"x").hexdigest()],
            }
        ],
    )
    cache = tmp_path / "cache"
    with pytest.raises(ManifestError, match="Unsafe path"):
        materialize(store, digest, cache)
    assert not (tmp_path / "escape.txt").exists()
    assert not any(p.name != f"{digest}.lock" for p in cache.iterdir())


def test_restore_refuses_a_file_that_is_also_a_folder(ws, tmp_path) -> None:
    store = dataset_store(ws.project.store_path)
    chunk = hashlib.sha256(b"x").hexdigest()
    store.put(b"x", chunk)
    entry = {"size": 1, "sha256": "0" * 64, "chunks": [chunk]}
    digest = _plant_manifest(ws, [{"path": "a", **entry}, {"path": "a/b", **entry}])
    with pytest.raises(ManifestError, match="also a folder"):
        materialize(store, digest, tmp_path / "cache")


def test_restore_detects_a_damaged_chunk(ws, project: Path, tmp_path) -> None:
    (project / "a.txt").write_text("hello")
    version = datasets.upload(project / "a.txt", "a", ws=ws).version
    store = dataset_store(ws.project.store_path)
    chunk = store.path(hashlib.sha256(b"hello").hexdigest())
    chunk.chmod(0o644)
    chunk.write_bytes(b"hellO")
    with pytest.raises(DatasetChangedError, match="damaged"):
        materialize(store, version.sha256, tmp_path / "cache")
    assert not (tmp_path / "cache" / version.sha256).exists()


@pytest.mark.parametrize("damage", ["unparseable", "same size, other chunks"])
def test_rm_that_fails_on_a_damaged_manifest_leaves_every_version_as_it_was(
    project: Path, damage: str
) -> None:
    """`data rm a` must free only what no other version needs; with another version's manifest
    damaged that cannot be known, so it fails and removes nothing (it used to remove `a` first)."""
    (project / "a.csv").write_bytes(b"a" * 5000)
    (project / "b.csv").write_bytes(b"b" * 7000)
    a = upload_json(project, "a.csv", "--name", "a")
    b = upload_json(project, "b.csv", "--name", "b")
    chunks = stored_chunks(project)
    path = project / ".mllib" / "store" / "datasets" / "objects" / b["sha256"][:2] / b["sha256"][2:]
    raw = path.read_bytes()
    path.chmod(0o644)
    if damage == "unparseable":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # valid JSON naming other chunks: only its hash tells
        path.write_bytes(raw.replace(b'"b.csv"', b'"c.csv"'))

    removed = mllib_cli(project, "data", "rm", "a")
    assert removed.returncode == 1, removed.output
    assert f"The manifest {b['sha256'][:16]} of a dataset version is damaged" in removed.stderr
    assert "nothing was removed" in removed.stderr and "Traceback" not in removed.output
    listed = {d["name"]: d for d in mllib_cli(project, "data", "list", "--json").json()}
    assert listed["a"]["sha256"] == a["sha256"] and "b" in listed
    assert stored_chunks(project) == chunks  # not one chunk freed
