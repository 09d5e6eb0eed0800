"""Warm workers: a study's process-runtime trials forked from one fork server that has imported
the model's libraries once (mllib.runtime.forkserver), each trial still a run of its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mllib.runtime.processes import is_alive
from tests.conftest import Project

# A library outside the project (on PYTHONPATH) and a module of the project's own: each notes
# every process that imports it, so a test sees where the imports happened.
LIBRARY = """
import os
with open(os.environ["IMPORTS_LOG"], "a") as f:
    f.write("library %d\\n" % os.getpid())
"""
HELPER = """
import os
with open(os.environ["IMPORTS_LOG"], "a") as f:
    f.write("helper %d\\n" % os.getpid())
"""
MODEL = """
import os

import helper
import warmlib

import mllib


class Warm:
    def __init__(self):
        self.x = mllib.Param(0.0)

    def train(self):
        print("WORKER pid=%d ppid=%d pgid=%d" % (os.getpid(), os.getppid(), os.getpgid(0)))
        mllib.log_metric("loss", (self.x - 2) ** 2)

    def predict(self, request):
        return self.x
"""


@pytest.fixture
def warm(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    site = tmp_path / "site"
    site.mkdir()
    (site / "warmlib.py").write_text(LIBRARY)
    project.write("helper.py", HELPER)
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("IMPORTS_LOG", str(tmp_path / "imports.log"))
    return project


def _tune(project: Project, name: str, **env: str) -> list[dict]:
    result = project.mllib(
        "tune", "model.py", "--param", "x=uniform:-4:4", "--metric", "loss", "--trials", "4",
        "--parallel", "2", "--pruner", "none", "--seed", "0", "--name", name, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    data = project.mllib("tune", "show", name, "--json").json()
    assert data["counts"]["complete"] == 4
    return [project.show(t["run_id"]) for t in data["trials"]]


def _imports(path: Path) -> list[str]:
    lines = path.read_text().split("\n") if path.exists() else []
    return [line.split()[0] for line in lines if line]


def _worker_line(project: Project, run_id: str) -> dict[str, int]:
    text = project.mllib("runs", "logs", run_id).stdout
    line = next(x for x in text.splitlines() if x.startswith("WORKER "))
    return {k: int(v) for k, v in (part.split("=") for part in line.split()[1:])}


def test_trials_are_forked_from_one_worker_that_imported_the_models_libraries_once(
    warm: Project,
):
    log = Path(os.environ["IMPORTS_LOG"])
    runs = _tune(warm, "warm")
    imports = _imports(log)
    # The installed library: imported once, by the fork server; the project's own module, by
    # every trial (its code is the run's snapshot, never imported ahead of it).
    assert imports.count("library") == 1 and imports.count("helper") == 4, imports
    workers = [_worker_line(warm, run["id"]) for run in runs]
    assert len({w["ppid"] for w in workers}) == 1  # one parent: the fork server
    for run, worker in zip(runs, workers, strict=True):
        # Each trial its own process and session (cancel signals its group), recorded as today.
        assert worker["pgid"] == worker["pid"] and worker["pid"] != worker["ppid"]
        assert run["status"] == "succeeded" and run["runtime"] == "process"
        assert run["environment"]["executable"] == sys.executable
        assert run["environment"]["runtime"] == "process"
        assert run["metric_summary"]["loss"]["last"] == pytest.approx((run["params"]["x"] - 2) ** 2)
    assert len({w["pid"] for w in workers}) == 4
    assert not is_alive(workers[0]["ppid"])  # the fork server ended with the study


def test_without_warm_workers_each_trial_starts_python_as_before(warm: Project):
    log = Path(os.environ["IMPORTS_LOG"])
    _tune(warm, "cold", MLLIB_WARM_WORKERS="0")
    imports = _imports(log)
    assert imports.count("library") == 4 and imports.count("helper") == 4, imports


def test_a_run_whose_start_up_environment_differs_is_not_forked(tmp_path: Path):
    from mllib.runtime.forkserver import WarmWorkers

    args = ["--run-dir", str(tmp_path / "none"), "--code-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "MLLIB_RUN_ID": "a"}
    pool = WarmWorkers([])
    try:
        first = pool.start(sys.executable, args, tmp_path, env)
        assert first is not None  # forked: a worker without a run folder, which fails (exit 3)
        output = b"".join(first.output())
        status = first.wait(30)
        assert status is not None and status.code == 3, output
        # Another run id: forked alike; another hash seed (read when Python starts): not forked.
        again = pool.start(sys.executable, args, tmp_path, {**env, "MLLIB_RUN_ID": "b"})
        assert again is not None
        b"".join(again.output())
        assert again.wait(30) is not None
        other = {**env, "PYTHONHASHSEED": "1"}
        assert pool.start(sys.executable, args, tmp_path, other) is None
        assert pool.start("/usr/bin/python3", args, tmp_path, env) is None
    finally:
        pool.close()
    assert pool.forked == 2
