"""`mllib runs rm` as a user cleans up, with the real command: records, folders and stored
objects go; what another run or a deployment still uses stays; a run in use is refused with
nothing removed; and the run ids answered by --json."""

from __future__ import annotations

import os
import time

from tests.conftest import Project

MODEL = """
import time
import mllib

class Sized:
    def __init__(self):
        self.n = mllib.Param(1)
        self.sleep = mllib.Param(0.0)

    def train(self):
        time.sleep(self.sleep)
        self.weights = list(range(self.n * 1000))
        mllib.log_metric("loss", 1.0 / self.n)

    def evaluate(self):
        return {"size": float(len(self.weights))}

    def predict(self, request):
        return {"size": len(self.weights)}
"""


def stored(project: Project) -> set[str]:
    objects = project.root / ".mllib" / "store" / "objects"
    return {p.parent.name + p.name for p in objects.rglob("*") if p.is_file()}


def age_the_store(project: Project, seconds: float = 3600) -> None:
    """Make every stored object look written `seconds` ago (past rm's 10-minute grace)."""
    then = time.time() - seconds
    for path in (project.root / ".mllib" / "store" / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def trained(project: Project, *params: str) -> dict:
    result = project.mllib("train", "model.py", *params, "--json")
    assert result.returncode == 0, result.output
    return result.json()


def test_rm_takes_runs_out_whole_and_keeps_what_others_use(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    keep, small, big = trained(project), trained(project, "--n=2"), trained(project, "--n=3")
    evaluation = project.mllib("evaluate", "--run", big["id"], "--json").json()
    before = stored(project)
    age_the_store(project)

    refused = project.mllib("runs", "rm", small["id"], big["id"])  # big was evaluated by a run
    assert refused.returncode == 5, refused.output
    assert f"Run {big['id']} was evaluated by run {evaluation['id']}" in refused.stderr
    assert f"mllib runs rm {big['id']} {evaluation['id']}" in refused.stderr
    assert len(project.mllib("runs", "list", "--json").json()) == 4  # all or none: nothing went

    done = project.mllib("runs", "rm", small["id"], big["id"], evaluation["id"], "--json")
    assert done.returncode == 0, done.output
    answer = done.json()
    assert sorted(answer["removed"]) == sorted([small["id"], big["id"], evaluation["id"]])
    assert answer["objects"] == 4 and answer["bytes_freed"] > 0  # two models: manifest, pickle
    assert [r["id"] for r in project.mllib("runs", "list", "--json").json()] == [keep["id"]]
    assert project.mllib("runs", "show", small["id"]).returncode == 4
    assert not (project.root / ".mllib" / "runs" / big["id"]).exists()
    left = stored(project)
    assert left < before and len(before - left) == 4  # the code snapshot, shared, stays
    predicted = project.mllib("predict", "model.py", "--run", keep["id"], "--input", "{}")
    assert predicted.returncode == 0 and predicted.json() == {"size": 1000}  # shared code stays
    # The removed versions' numbers (2 and 3) are not given again: history still names them.
    assert project.mllib("models", "show", "Sized", "--json").json()["versions"][-1]["version"] == 1
    assert trained(project, "--n=4")["model_version"] == 4


def test_rm_refuses_a_run_in_use_and_keeps_recent_objects(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    named = trained(project, "--n=2")
    assert project.mllib("models", "alias", "Sized:1", "champion").returncode == 0
    refused = project.mllib("runs", "rm", named["id"])
    assert refused.returncode == 5 and "which alias champion names" in refused.stderr
    assert "mllib models alias Sized@champion --rm" in refused.stderr

    running = project.mllib("train", "model.py", "--sleep=30", "--detach", "--json").json()
    busy = project.mllib("runs", "rm", running["id"])
    assert busy.returncode == 5 and f"mllib runs cancel {running['id']}" in busy.stderr
    assert project.mllib("runs", "cancel", running["id"]).returncode == 0

    assert project.mllib("models", "alias", "Sized@champion", "--rm").returncode == 0
    fresh = project.mllib("runs", "rm", named["id"], running["id"], "--json").json()
    assert fresh["objects"] == 0 and fresh["kept_recent"] >= 2  # stored minutes ago: kept for now
    assert project.mllib("runs", "list", "--json").json() == []
