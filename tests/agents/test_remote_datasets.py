"""Datasets in remote runs on real sshd hosts: the agent is sent only the chunks it lacks,
materialises the version read-only from its own chunk cache, and a second run sends nothing."""

from __future__ import annotations

import json

from helpers import mllib

MODEL = """
import os
import pathlib

import mllib


class Reader:
    def __init__(self):
        self.train_path = mllib.Param("data/train.csv", env="TRAIN_DATA")

    def train(self):
        path = pathlib.Path(self.train_path)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        mllib.log_metric("files", len(files))
        mllib.log_metric("bytes", sum(len(f.read_bytes()) for f in files))
        print("FIRST", files[0].read_text().strip())
        print("WRITABLE", any(os.access(f, os.W_OK) for f in files) and os.getuid() != 0)

    def predict(self, request):
        return request
"""


def test_a_remote_run_gets_its_dataset_and_a_second_run_sends_no_chunks(agents, project):
    (project / "model.py").write_text(MODEL)
    data = project.parent / "images"  # outside the project: not part of its code snapshot
    (data / "cats").mkdir(parents=True)
    (data / "cats" / "a.txt").write_text("cat a\n")
    (data / "b.txt").write_text("b\n")
    (data / "big.bin").write_bytes(bytes(range(256)) * 40_000)  # 10 MB: two chunks
    assert mllib("data", "upload", str(data), "--name", "images", cwd=project).returncode == 0

    first = mllib("train", "model.py", "--agent", "h0", "--data", "train=images", cwd=project)
    second = mllib("train", "model.py", "--agent", "h0", "--data", "train=images", cwd=project)

    assert first.returncode == 0, first.stderr
    assert "dataset images@1: sent 5 chunk(s)" in first.stderr  # 4 chunks and the manifest
    assert "0 already there" in first.stderr
    assert "FIRST b" in first.stdout and "WRITABLE False" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "dataset images@1: sent 0 chunk(s) (0 B) to agent h0, 5 already there" in second.stderr
    runs = json.loads(mllib("runs", "list", "--json", cwd=project).stdout)
    for run in runs:
        shown = json.loads(mllib("runs", "show", run["id"], "--json", cwd=project).stdout)
        assert shown["metrics"] == {"files": 3, "bytes": 6 + 2 + 10_240_000}
        assert [(d["env"], d["name"], d["version"]) for d in shown["datasets"]] == [
            ("TRAIN_DATA", "images", 1)
        ]
        assert "/.mllib-agent/data/" in shown["params"]["train_path"]  # the agent's own copy
    assert not (project / ".mllib" / "data").exists()  # nothing materialised here for them
