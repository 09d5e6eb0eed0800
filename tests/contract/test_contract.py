"""What every runtime guarantees a run: the same params, environment, metrics, artifacts, model,
record, failure classes, cancellation and logs. Each test runs once per runtime."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.contract.harness import ProbeProject


def _show(project: ProbeProject, run_id: str) -> dict:
    return views.show(Workspace.find(project.root), run_id)


def _blob(project: ProbeProject, sha256: str) -> bytes:
    return Workspace.find(project.root).store.get_bytes(sha256)


def test_params_follow_precedence_and_reach_the_model(project: ProbeProject) -> None:
    run = project.train({"lr": "0.5"})

    shown = _show(project, run.id)
    assert run.status == "succeeded", run.error
    assert shown["params"] == {
        "lr": 0.5,
        "epochs": 3,
        "mode": "ok",
        "data_path": str(project.outside / "train.txt"),
        "extra": "from-env-file",
        "tag": "from-config",
    }
    assert shown["metric_summary"]["loss"]["max"] == 0.5  # step 0 logs lr itself


def test_environment_contract(project: ProbeProject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRA", "from-the-shell")  # a param's env= variable: the shell wins
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # numeric variables reach every local runtime

    run = project.train(seed=7)

    shown = _show(project, run.id)
    env_artifact = next(a for a in shown["artifacts"] if a["path"] == "artifacts/env.json")
    seen = json.loads(_blob(project, env_artifact["sha256"]))
    data_path, workdir = (
        str(project.outside / "train.txt"),
        project.runtime.workdir(project.root, run.id),
    )
    if not project.runtime.same_data_paths:  # the node's copy of the file the job brought
        assert seen["DATA_PATH"].endswith("/train.txt") and seen["DATA_PATH"] != data_path
        data_path = seen["DATA_PATH"]
    if workdir is None:  # the node's copy of the code the job brought
        assert seen["cwd"].endswith("/code") and not seen["cwd"].startswith(str(project.root))
    assert seen == {
        "MLLIB_RUN_ID": run.id,
        "PYTHONHASHSEED": "7",
        "SECRET_SETTING": "s3cret",
        "EXTRA": "from-the-shell",
        "DATA_PATH": data_path,  # readable where the host has it
        # an agent's runs take the agent host's own numeric environment (its CPU, its cores)
        "OMP_NUM_THREADS": None if project.runtime.agent else "3",
        # paths into the project mean what they mean on the host (an agent's working copy)
        "cwd": str(workdir or seen["cwd"]),
    }
    assert shown["params"]["extra"] == "from-the-shell"
    assert shown["metrics"]["data_chars"] == len("outside data\nsecond line\nthird\n")
    if project.runtime.keeps_workdir:
        assert (project.root / "written-in-project.txt").read_text() == "hello\n"


def test_an_absolute_path_into_the_project_works_as_a_param(project: ProbeProject) -> None:
    inside = project.root / "data" / "train.txt"
    given = str(inside) if project.runtime.absolute_project_paths else "data/train.txt"

    run = project.train({"data_path": given})

    assert run.status == "succeeded", run.error
    assert _show(project, run.id)["metrics"]["data_chars"] == len(inside.read_text())


def test_metric_series_are_recorded(project: ProbeProject) -> None:
    run = project.train({"epochs": "4", "lr": "1.0"})

    summary = _show(project, run.id)["metric_summary"]
    assert summary["loss"] == {"last": 0.25, "min": 0.25, "max": 1.0, "count": 4, "last_step": 3}
    assert summary["b"]["last"] == 2.0


def test_artifacts_are_stored_with_their_content_hash(project: ProbeProject) -> None:
    run = project.train({"lr": "0.25"})

    artifacts = {a["path"]: a for a in _show(project, run.id)["artifacts"]}
    notes = artifacts["artifacts/notes.txt"]
    assert notes["sha256"] == hashlib.sha256(b"lr=0.25\n").hexdigest()
    assert (
        _blob(project, artifacts["artifacts/logged.txt"]["sha256"]) == b"logged with log_artifact\n"
    )
    assert artifacts["model"]["kind"] == "model"


def test_registry_record_and_model_round_trip(project: ProbeProject) -> None:
    import mllib

    run = project.train()

    shown = _show(project, run.id)
    assert shown["status"] == "succeeded"
    assert shown["runtime"] == project.runtime.name
    assert shown["action"] == "train+evaluate"
    assert shown["model_version"] == 1
    assert shown["eval_metrics"]["chars"] == float(len("outside data\nsecond line\nthird\n"))
    assert shown["code_hash"] and shown["seed"] == 0
    answer = mllib.predict(
        {"x": 21}, project.model, run=run.id, runtime=project.runtime.local_runtime
    )
    assert answer["y"] == 42
    assert (
        project.runtime.still_running(get_run(Workspace.find(project.root).registry, run.id)) == []
    )


def test_user_error_shows_the_users_traceback(project: ProbeProject) -> None:
    result = project.run_cli("train", "model.py", "--mode=raise")

    assert result.returncode == 1, result.stderr
    run = _latest(project)
    assert run["status"] == "failed"
    assert run["failure_class"] == "user_error"
    assert run["error"] == "ValueError: bad value in train"
    log = (project.root / ".mllib" / "runs" / run["id"] / "output.log").read_text()
    workdir = project.runtime.workdir(project.root, run["id"])
    model_path = f"{workdir}/model.py" if workdir else "/code/model.py"  # the node's copy
    assert f'{model_path}", line' in log and "in _fail" in log
    assert "mllib/worker" not in log  # mllib's own frames are left out


def test_sigkill_is_a_system_error(project: ProbeProject) -> None:
    result = project.run_cli("train", "model.py", "--mode=sigkill")

    assert result.returncode == 3, result.stderr
    run = _latest(project)
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "SIGKILL" in run["error"]


def test_cancel_leaves_nothing_running(project: ProbeProject) -> None:
    started = project.run_cli("train", "model.py", "--mode=sleep", "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    log = project.root / ".mllib" / "runs" / run_id / "output.log"
    wait_for(
        lambda: log.is_file() and "sleeping" in log.read_text(), timeout=60, what="the run to start"
    )

    cancelled = project.cli("runs", "cancel", run_id)

    assert cancelled.returncode == 0, cancelled.stderr
    run = get_run(Workspace.find(project.root).registry, run_id)
    assert run.status == "cancelled"
    assert project.runtime.still_running(run) == []


def test_ctrl_c_cancels_and_leaves_nothing_running(project: ProbeProject) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mllib",
            "train",
            "model.py",
            "--mode=sleep",
            *project.runtime.cli_args,
        ],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = project.root / ".mllib" / "runs"
        wait_for(
            lambda: any("sleeping" in p.read_text() for p in runs.glob("*/output.log")),
            timeout=60,
            what="the run to start",
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        proc.communicate()
    run = get_run(Workspace.find(project.root).registry, _latest(project)["id"])
    assert run.status == "cancelled"
    assert project.runtime.still_running(run) == []


def test_logs_hold_stdout_and_stderr(project: ProbeProject) -> None:
    run = project.train()

    logs = project.cli("runs", "logs", run.id)

    assert logs.returncode == 0, logs.stderr
    assert "train says hello on stdout" in logs.stdout
    assert "train says hello on stderr" in logs.stdout


def _latest(project: ProbeProject) -> dict:
    return views.list_dicts(Workspace.find(project.root), limit=1)[0]


def test_runtime_is_recorded_with_its_reason(project: ProbeProject) -> None:
    run = project.train()

    assert run.runtime == project.runtime.name
    assert run.runtime_note.startswith(project.runtime.note_start)
    assert os.path.isfile(run.log_path)
