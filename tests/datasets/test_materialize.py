"""Materialising a version for runs: built once, whatever the number of runs asking at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mllib import datasets
from mllib.datasets.chunkstore import dataset_store
from mllib.datasets.materialize import materialize
from tests.datasets.helpers import CHUNK_SIZE, pattern


@pytest.fixture
def version(ws, project: Path):
    src = project / "set"
    (src / "sub").mkdir(parents=True)
    (src / "big.bin").write_bytes(pattern(CHUNK_SIZE + 10))
    (src / "sub" / "small.txt").write_text("small")
    return datasets.upload(src, "set", ws=ws).version


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
