"""Datasets in runs: the process runtime gets a read-only copy through the env variable contract,
and the run records which versions it read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from mllib.runs import views
from mllib.workspace import Workspace
from tests.datasets.helpers import mllib_cli, upload_json, wait_for, write_config

MODEL = """
import os
import pathlib
import time

import mllib


class Reader:
    def __init__(self):
        self.train_path = mllib.Param("data/train.csv", env="TRAIN_DATA")
        self.wait_for = mllib.Param("")

    def train(self):
        path = pathlib.Path(self.train_path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        mllib.log_metric("files", len(files))
        mllib.log_metric("bytes", sum(len(f.read_bytes()) for f in files))
        print("ENV", os.environ["TRAIN_DATA"])
        print("PARAM", self.train_path)
        print("FIRST", files[0].read_text().strip())
        while self.wait_for and not os.path.exists(self.wait_for):
            time.sleep(0.05)

    def evaluate(self):
        return {"seen": len(pathlib.Path(self.train_path).read_text())}

    def predict(self, request):
        return request
"""


def _project(project: Path) -> Path:
    (project / "model.py").write_text(MODEL)
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("from the env file\n")
    (project / ".env.local").write_text("TRAIN_DATA=data/train.csv\n")
    images = project / "images"
    (images / "cats").mkdir(parents=True)
    (images / "cats" / "a.txt").write_text("cat a\n")
    (images / "b.txt").write_text("b\n")
    return project


def _show(project: Path, run_id: str) -> dict:
    """What `mllib runs show --json` prints (its library function, to keep the test quick)."""
    ws = Workspace.find(project)
    try:
        return json.loads(json.dumps(views.show(ws, run_id)))
    finally:
        ws.registry.close()


def _runs(project: Path) -> list[dict]:
    ws = Workspace.find(project)
    try:
        return views.list_dicts(ws)
    finally:
        ws.registry.close()


def _last_run(project: Path) -> dict:
    return _runs(project)[0]


def test_a_process_run_reads_a_read_only_copy_through_the_env_variable(project: Path) -> None:
    _project(project)
    version = upload_json(project, "images", "--name", "images")

    run = mllib_cli(project, "train", "model.py", "--data", "train=images")

    assert run.returncode == 0, run.stderr + run.stdout
    shown = _show(project, _last_run(project)["id"])
    assert shown["metrics"] == {"files": 2, "bytes": 8}
    copy = project / ".mllib" / "data" / version["sha256"]
    assert f"ENV {copy}" in run.stdout and f"PARAM {copy}" in run.stdout  # the env file lost
    assert "FIRST b" in run.stdout
    assert shown["params"]["train_path"] == str(copy)
    assert shown["datasets"] == [
        {"env": "TRAIN_DATA", "name": "images", "version": 1, "sha256": version["sha256"]}
    ]
    for path in [copy, copy / "cats", copy / "cats" / "a.txt", copy / "b.txt"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, f"{path} is writable"
    text = mllib_cli(project, "runs", "show", shown["id"]).stdout
    assert "Datasets" in text and "TRAIN_DATA" in text and "images@1" in text


def test_data_in_mllib_toml_binds_a_one_file_dataset_to_every_run(project: Path) -> None:
    _project(project)
    (project / "train.csv").write_text("from a dataset\n")
    upload_json(project, "train.csv", "--name", "lines")
    write_config(project, train="lines@1")

    run = mllib_cli(project, "train", "model.py", "--evaluate")

    assert run.returncode == 0, run.stderr + run.stdout
    assert "FIRST from a dataset" in run.stdout
    shown = _show(project, _last_run(project)["id"])
    assert shown["params"]["train_path"].endswith("/train.csv")  # the file itself, not a folder
    assert shown["eval_metrics"] == {"seen": len("from a dataset\n")}
    assert [d["name"] for d in shown["datasets"]] == ["lines"]


def test_evaluate_and_rerun_read_the_versions_the_training_run_read(project: Path) -> None:
    _project(project)
    (project / "t.csv").write_text("version one\n")
    upload_json(project, "t.csv", "--name", "t")
    assert mllib_cli(project, "train", "model.py", "--data", "train=t").returncode == 0
    trained = _last_run(project)["id"]
    (project / "t.csv").write_text("version two!\n")
    upload_json(project, "t.csv", "--name", "t")

    evaluated = mllib_cli(project, "evaluate", "model.py", "--run", trained)
    rerun = mllib_cli(project, "runs", "rerun", trained)

    assert evaluated.returncode == 0, evaluated.stderr
    assert rerun.returncode == 0, rerun.stderr
    assert "FIRST version one" in rerun.stdout
    for run in _runs(project):
        assert [(d["name"], d["version"]) for d in _show(project, run["id"])["datasets"]] == [
            ("t", 1)
        ]
    latest = mllib_cli(project, "train", "model.py", "--data", "TRAIN_DATA=t")
    assert "FIRST version two!" in latest.stdout


def test_a_dataset_in_use_by_an_active_run_cannot_be_removed(project: Path) -> None:
    _project(project)
    upload_json(project, "images", "--name", "images")
    gate = project / "gate"
    started = mllib_cli(
        project, "train", "model.py", "--data", "train=images", f"--wait_for={gate}", "--detach"
    )
    run_id = started.stdout.strip()
    assert started.returncode == 0 and run_id, started.stderr
    try:
        wait_for(lambda: _show(project, run_id)["status"] == "running", interval=0.05)
        refused = mllib_cli(project, "data", "rm", "images")
        assert refused.returncode == 2
        assert f"in use by active run(s) {run_id}" in refused.stderr
    finally:
        gate.write_text("go")
    wait_for(lambda: _show(project, run_id)["status"] == "succeeded", interval=0.05)
    assert mllib_cli(project, "data", "rm", "images").returncode == 0
    assert not any((project / ".mllib" / "data").iterdir())
    # The run keeps its record of what it read.
    assert _show(project, run_id)["datasets"][0]["name"] == "images"
    again = mllib_cli(project, "runs", "rerun", run_id)
    assert again.returncode == 4 and "images@1 used by run" in again.stderr


def test_a_touched_copy_is_rebuilt_before_the_next_run(project: Path) -> None:
    _project(project)
    (project / "t.csv").write_text("pristine\n")
    version = upload_json(project, "t.csv", "--name", "t")
    assert mllib_cli(project, "train", "model.py", "--data", "train=t").returncode == 0
    copy = project / ".mllib" / "data" / version["sha256"] / "t.csv"
    copy.chmod(0o644)  # as root could, without asking
    copy.write_text("tampered\n")

    run = mllib_cli(project, "train", "model.py", "--data", "train=t")

    assert "FIRST pristine" in run.stdout
    assert copy.read_text() == "pristine\n"


def test_unknown_datasets_and_bad_data_options_are_clear_errors(project: Path) -> None:
    _project(project)
    missing = mllib_cli(project, "train", "model.py", "--data", "train=nope")
    assert missing.returncode == 4 and "No dataset nope" in missing.stderr
    bad = mllib_cli(project, "train", "model.py", "--data", "nonsense")
    assert bad.returncode == 2 and "is not KEY=NAME[@VERSION]" in bad.stderr
    assert _runs(project) == []


def test_runtimes_get_the_datasets_as_data_mounts(project: Path) -> None:
    from mllib.registry.runs import get_run
    from mllib.runs.job import job_for

    _project(project)
    version = upload_json(project, "images", "--name", "images")
    assert mllib_cli(project, "train", "model.py", "--data", "IMAGES=images").returncode == 0
    ws = Workspace.find(project)
    try:
        job = job_for(ws, get_run(ws.registry, _last_run(project)["id"]))
    finally:
        ws.registry.close()

    copy = project / ".mllib" / "data" / version["sha256"]
    assert job.data_mounts == {"IMAGES": copy}
    assert job.env["IMAGES"] == str(copy)
