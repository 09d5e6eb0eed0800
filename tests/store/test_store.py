"""The content-addressed store: blobs by sha256, trees whose hash depends only on content."""

import hashlib
import os

import pytest

from mllib.store import LocalBlobStore, materialize_tree, put_tree
from mllib.store.trees import safe_relative


def test_blobs_are_named_by_content_and_stored_once(tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    blob = store.put_bytes(b"hello")
    assert (
        blob.sha256 == hashlib.sha256(b"hello").hexdigest()
        and store.get_bytes(blob.sha256) == b"hello"
    )
    source = tmp_path / "f.bin"
    source.write_bytes(b"hello")
    assert store.put_file(source, move=True).sha256 == blob.sha256
    assert not source.exists()  # moved in (or dropped, being a duplicate)
    assert len(list((tmp_path / "store" / "objects").rglob("*"))) == 2  # one folder, one blob
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_tree_hash_ignores_timestamps_and_keeps_the_executable_bit(tmp_path):
    store = LocalBlobStore(tmp_path / "store")
    for name in ("a", "b"):
        folder = tmp_path / name
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "w.bin").write_bytes(b"weights")
        (folder / "run.sh").write_text("echo hi\n")
        os.chmod(folder / "run.sh", 0o755)
    os.utime(tmp_path / "b" / "sub" / "w.bin", (1, 1))
    first, second = put_tree(store, tmp_path / "a"), put_tree(store, tmp_path / "b")
    assert first.sha256 == second.sha256 and first.size == len(b"weights") + 8
    out = tmp_path / "out"
    materialize_tree(store, first.sha256, out)
    assert (out / "sub" / "w.bin").read_bytes() == b"weights" and os.access(out / "run.sh", os.X_OK)


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "", "a\\..\\b"])
def test_unsafe_manifest_paths_are_refused(path):
    with pytest.raises(ValueError):
        safe_relative(path)


@pytest.mark.parametrize("size", [(1 << 20) + 123, 3 << 20, 4096])
def test_large_aligned_buffers_are_stored_exactly(tmp_path, size):
    import mmap

    store = LocalBlobStore(tmp_path / "store")
    buffer = mmap.mmap(-1, 4 << 20)  # page-aligned, as dataset chunks are: written with O_DIRECT
    data = os.urandom(size)
    buffer[:size] = data
    blob = store.put_bytes(memoryview(buffer)[:size], sha256=hashlib.sha256(data).hexdigest())
    assert store.get_bytes(blob.sha256) == data and blob.size == size
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
