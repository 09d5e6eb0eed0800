"""An agent's disk stays bounded: a synced run's working copy and folder go at once, `mllib agents
prune` frees dataset copies and cached blobs, and later runs still work, re-using what is left."""

from __future__ import annotations

import json
import os
import random

from helpers import mllib

READER = """
import pathlib

import mllib


class Reader:
    def __init__(self):
        self.train_path = mllib.Param("data.bin", env="TRAIN_DATA")

    def train(self):
        mllib.log_metric("bytes", len(pathlib.Path(self.train_path).read_bytes()))

    def predict(self, request):
        return request
"""
SIZE = 10_240_000  # two 8 MiB chunks


def _disk_use(root) -> int:
    return sum(
        os.lstat(os.path.join(folder, name)).st_size
        for folder, _, files in os.walk(root)
        for name in files
    )


def _train(project) -> tuple[str, str]:
    """A run on h0 reading the dataset; its id and what mllib said."""
    result = mllib("train", "model.py", "--agent", "h0", "--data", "train=blob", cwd=project)
    assert result.returncode == 0, result.stderr
    runs = json.loads(mllib("runs", "list", "--json", "--limit", "1", cwd=project).stdout)
    shown = json.loads(mllib("runs", "show", runs[0]["id"], "--json", cwd=project).stdout)
    assert shown["metrics"] == {"bytes": SIZE}
    return runs[0]["id"], result.stderr


def _prune(project, *args: str) -> dict:
    result = mllib("agents", "prune", "h0", "--older-than", "0", *args, "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prune_frees_an_agents_disk_and_later_runs_still_work(agents, project, lab):
    (project / "model.py").write_text(READER)
    data = project.parent / "blob.bin"
    data.write_bytes(random.Random(4).randbytes(SIZE))  # chunks no other test sends
    assert mllib("data", "upload", str(data), "--name", "blob", cwd=project).returncode == 0
    root = lab.hosts[0].agent_root

    run_id, said = _train(project)
    assert "sent 3 chunk(s)" in said  # two chunks and the manifest
    assert not (root / "work" / run_id).exists() and not (root / "runs" / run_id).exists()
    before = _disk_use(root)

    pruned = _prune(project)  # the dataset copy goes; the cache is under its cap
    assert pruned["datasets"]["copies"] == 1 and pruned["cache"]["blobs"] == 0
    assert pruned["freed_bytes"] >= SIZE and _disk_use(root) <= before - SIZE
    assert "sent 0 chunk(s) (0 B) to agent h0, 3 already there" in _train(project)[1]

    store = _disk_use(root / "store")
    pruned = _prune(project, "--cache-gb", "0")  # and now the cache too, oldest first
    assert pruned["cache"]["blobs"] >= 3 and _disk_use(root / "store") <= store - SIZE
    assert "sent 3 chunk(s)" in _train(project)[1]  # sent again, and the run works


def test_prune_of_an_unknown_agent_is_a_clear_error(project, mllib_home):
    result = mllib("agents", "prune", "nope", cwd=project)
    assert result.returncode == 4 and "nope" in result.stderr
