"""The agent's cache rules on a real registry and store (no SSH needed): least recently used
blobs go first, and a finished run's outputs stay until its folder is released."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

import mllib
from mllib.registry import Registry
from mllib.store import LocalBlobStore, read_tree
from mllib.workspace import Workspace
from tests.conftest import model_source

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agents"))
from mllib_agent import housekeeping


def _aged(store: LocalBlobStore, data: bytes, age_s: float) -> str:
    sha = store.put_bytes(data).sha256
    then = time.time() - age_s
    os.utime(store.path(sha), (then, then))
    return sha


def test_the_least_recently_used_blobs_are_evicted_first(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    reg = Registry.open(tmp_path / "registry.db")
    old, older, newest = (_aged(store, bytes([i]) * 1000, age) for i, age in enumerate((60, 90, 1)))
    housekeeping.mark_used(store, [older])  # used again just now: no longer the oldest

    trimmed = housekeeping.trim_cache(reg, store, cap_bytes=2000)

    assert trimmed == {"blobs": 1, "envs": 0, "freed_bytes": 1000, "store_bytes": 2000}
    assert (store.has(old), store.has(older), store.has(newest)) == (False, True, True)


def _env(envs: Path, key: str, size: int, age_s: float) -> Path:
    """A project venv as the venv runtime leaves it (its metadata says its size)."""
    meta = envs / key / "mllib-env.json"
    meta.parent.mkdir(parents=True)
    (meta.parent / "payload").write_bytes(b"x" * size)
    meta.write_text(json.dumps({"key": key, "size": size}))
    then = time.time() - age_s
    os.utime(meta, (then, then))
    return meta.parent


def test_project_venvs_are_evicted_with_the_blobs_never_one_in_use(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    reg = Registry.open(tmp_path / "registry.db")
    blob = _aged(store, b"b" * 1000, 60)
    envs = tmp_path / "envs"
    unused = _env(envs, "a" * 24, 1500, 120)
    busy = _env(envs, "b" * 24, 1500, 200)  # the oldest, but a run holds it
    fd = os.open(envs / f"{'b' * 24}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        trimmed = housekeeping.trim_cache(reg, store, cap_bytes=2500, envs=envs)
    finally:
        os.close(fd)

    assert trimmed == {"blobs": 0, "envs": 1, "freed_bytes": 1500, "store_bytes": 2500}
    assert (unused.exists(), busy.exists(), store.has(blob)) == (False, True, True)


def test_a_finished_runs_outputs_stay_until_its_folder_is_released(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(model_source("basic"))
    run = mllib.train(tmp_path / "model.py", runtime="process", echo=None)
    ws = Workspace.find(tmp_path)
    model = next(a for a in _artifacts(ws, run.id) if a["kind"] == "model")
    outputs = {model["sha256"], *(f.sha256 for f in read_tree(ws.store, model["sha256"]).files)}

    housekeeping.trim_cache(ws.registry, ws.store, cap_bytes=0)

    assert all(ws.store.has(sha) for sha in outputs)  # its folder is here: not synced yet
    assert not ws.store.has(run.code_hash)  # the code is sent again whenever needed
    freed = housekeeping.remove(Path(run.run_dir))
    assert freed > 0 and not Path(run.run_dir).exists()
    housekeeping.trim_cache(ws.registry, ws.store, cap_bytes=0)
    assert not any(ws.store.has(sha) for sha in outputs)


def _artifacts(ws: Workspace, run_id: str) -> list[dict]:
    from mllib.registry.artifacts import list_artifacts

    return list_artifacts(ws.registry, run_id)
