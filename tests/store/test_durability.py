"""The store survives what disks do: another filesystem, torn writes, power cuts."""

from __future__ import annotations

import hashlib
import os

from mllib.store import LocalBlobStore
from tests.conftest import Mounts, Project


def test_a_store_on_another_filesystem_trains_predicts_and_serves_its_model(
    model_project: Project, mounts: Mounts, tmp_path
):
    """MLLIB_STORE on another mount (a tmpfs here): every run used to fail with `Invalid
    cross-device link` when its model was moved into the store."""
    store = mounts.tmpfs(tmp_path / "elsewhere", "64m")
    env = {"MLLIB_STORE": str(store)}
    trained = model_project.mllib("train", "model.py", "--evaluate", env=env)
    assert trained.returncode == 0, trained.output
    run = model_project.last_run()
    assert run["status"] == "succeeded" and run["model_version"] == 1
    model = next(a for a in run["artifacts"] if a["kind"] == "model")
    assert LocalBlobStore(store).verify(model["sha256"])
    assert list((store / "tmp").iterdir()) == []  # nothing left half-written
    predicted = model_project.mllib("predict", "model.py", "--input", '{"x": 2}', env=env)
    assert predicted.returncode == 0, predicted.output


def test_a_torn_blob_is_not_trusted_by_its_name_and_is_written_again(tmp_path):
    """After a power cut a blob could exist under its name, shorter than its content."""
    store = LocalBlobStore(tmp_path / "store")
    data = os.urandom(300_000)
    blob = store.put_bytes(data)
    path = store.path(blob.sha256)
    path.chmod(0o644)
    path.write_bytes(data[:1000])  # what a torn write leaves
    assert not store.has(blob.sha256, len(data)) and not store.verify(blob.sha256)
    store.put_bytes(data)  # the next upload or run storing the same content repairs it
    assert store.get_bytes(blob.sha256) == data and store.verify(blob.sha256)

    source = tmp_path / "model.bin"
    source.write_bytes(data)
    path.chmod(0o644)
    path.write_bytes(b"")  # the other common torn state: the name, with nothing behind it
    assert not store.has(blob.sha256)  # an empty file only stands for the empty blob
    store.put_file(source, move=True)
    assert store.verify(blob.sha256) and not source.exists()
    empty = store.put_bytes(b"")
    assert empty.sha256 == hashlib.sha256(b"").hexdigest() and store.has(empty.sha256)


def test_a_blob_reaches_the_disk_before_its_name_and_its_name_after(tmp_path, monkeypatch):
    """The order that makes a power cut safe: fsync the temporary file, rename it, fsync the
    folder. The real calls run; the test only watches them (a power cut cannot be staged here)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = LocalBlobStore(tmp_path / "store")
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 5000)
    for put in (lambda: store.put_bytes(b"hello"), lambda: store.put_file(source, move=True)):
        calls.clear()
        blob = put()
        final = str(store.path(blob.sha256))
        rename = calls.index(("rename", final))
        assert any(
            kind == "fsync" and where.startswith(str(store.tmp)) for kind, where in calls[:rename]
        ), calls
        assert ("fsync", os.path.dirname(final)) in calls[rename:], calls
