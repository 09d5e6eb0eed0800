"""Sending a version to a peer chunk store (what an agent host will hold) and materialising it there.

The peer here is `python -m mllib.datasets ...` in a real subprocess with its own store and cache,
exactly the commands an agent runs behind an SSH exec channel.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mllib import datasets
from mllib.datasets.chunkstore import LocalChunkStore, dataset_store
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.materialize import load_manifest, materialize
from mllib.datasets.progress import NoProgress
from mllib.datasets.transfer import CommandPeer, read_frames, sync_version, write_frames
from tests.datasets.helpers import CHUNK_SIZE, pattern


@pytest.fixture
def version(ws, project: Path):
    src = project / "set"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(pattern(CHUNK_SIZE + 10))
    (src / "sub" / "small.txt").write_text("small")
    (src / "copy.txt").write_text("small")  # the same chunk twice: sent once
    return datasets.upload(src, "set", ws=ws).version


def test_a_peer_receives_only_missing_chunks_and_a_retry_sends_none(ws, version, tmp_path) -> None:
    store = dataset_store(ws.project.store_path)
    peer = CommandPeer(
        [sys.executable], str(tmp_path / "agent" / "chunks"), str(tmp_path / "agent" / "data")
    )

    first = sync_version(store, version.sha256, peer)
    second = sync_version(store, version.sha256, peer)

    assert (first.sent_chunks, first.present_chunks) == (4, 0)  # 2 + 1 shared + the manifest
    assert first.sent_bytes == CHUNK_SIZE + 10 + 5 + len(store.read(version.sha256))
    assert (second.sent_chunks, second.sent_bytes, second.present_chunks) == (0, 0, 4)
    root = Path(first.path)
    assert root == tmp_path / "agent" / "data" / version.sha256
    assert (root / "sub" / "small.txt").read_text() == "small"
    assert (root / "big.bin").read_bytes() == pattern(CHUNK_SIZE + 10)


def test_a_peer_with_some_chunks_gets_the_rest(ws, version, tmp_path) -> None:
    store = dataset_store(ws.project.store_path)
    agent = LocalChunkStore(tmp_path / "chunks")
    big = next(f for f in load_manifest(store, version.sha256).files if f.path == "big.bin")
    for digest in big.chunks:  # the agent already has big.bin's chunks
        agent.put(store.read(digest), digest)
    peer = CommandPeer([sys.executable], str(agent.root), str(tmp_path / "data"))

    result = sync_version(store, version.sha256, peer)

    assert result.present_chunks == 2 and result.sent_chunks == 2


def test_a_damaged_frame_is_refused_and_nothing_is_stored(ws, version, tmp_path) -> None:
    store = dataset_store(ws.project.store_path)
    stream = io.BytesIO()
    write_frames(store, [version.sha256], stream, NoProgress())
    raw = bytearray(stream.getvalue())
    raw[80] ^= 1  # a bit flipped inside the manifest's bytes
    target = LocalChunkStore(tmp_path / "peer")
    with pytest.raises(DatasetChangedError, match="damaged"):
        read_frames(io.BytesIO(bytes(raw)), target)
    assert target.missing([version.sha256]) == [version.sha256]

    proc = subprocess.run(
        [sys.executable, "-m", "mllib.datasets", "receive", "--store", str(tmp_path / "peer")],
        input=bytes(raw),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 1 and b"damaged" in proc.stderr


def test_concurrent_materialisations_of_one_version_build_it_once(ws, version, tmp_path) -> None:
    store = dataset_store(ws.project.store_path)
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(materialize(store, version.sha256, cache)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [version.sha256, f"{version.sha256}.ok", f"{version.sha256}.lock"]
    )
