"""Datasets handed to runs, on every runtime: the variable names the version's read-only copy,
the run records the version it read, and nothing the run does changes the copy."""

from __future__ import annotations

from mllib import datasets
from mllib.runs import views
from mllib.workspace import Workspace
from tests.contract.harness import ProbeProject


def test_a_dataset_reaches_the_run_read_only_through_its_variable(project: ProbeProject) -> None:
    source = project.outside / "dataset.txt"
    source.write_text("the dataset's text\n")
    ws = Workspace.find(project.root)
    version = datasets.upload(source, "text", ws=ws).version

    run = project.train({"mode": "write_data"}, data=["DATA_PATH=text@1"])

    assert run.status == "succeeded", run.error
    shown = views.show(ws, run.id)
    copy = project.runtime.data_dir(project.root) / version.sha256 / "dataset.txt"
    assert shown["metrics"]["data_chars"] == len("the dataset's text\n")  # not the env file's
    assert shown["datasets"] == [
        {"env": "DATA_PATH", "name": "text", "version": 1, "sha256": version.sha256}
    ]
    written = next(a for a in shown["artifacts"] if a["path"] == "artifacts/write.txt")
    result = ws.store.get_bytes(written["sha256"]).decode()
    if project.runtime.name == "docker":
        assert result == "OSError: Read-only file system"
        assert copy.read_text() == "the dataset's text\n"
    else:  # a read-only file, which only root can write through; the next run rebuilds it
        # (an agent's user is not root: its run cannot)
        assert copy.stat().st_mode & 0o222 == 0 or result == "written"
        again = project.train({"mode": "ok"}, data=["DATA_PATH=text@1"])
        assert views.show(ws, again.id)["metrics"]["data_chars"] == len("the dataset's text\n")
