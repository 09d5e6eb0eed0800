"""Runs shipped to a Ray node that does not see this machine's files (`[ray] files = "ship"`),
beyond what the contract suite checks of every runtime (tests/contract runs each scenario as
`ray-ship` too).

The session's head runs in its own mount namespace where one folder of the session's temp
folder is an empty tmpfs (tests/conftest.py `ray_head`, `ray_shipped_folder`): the projects,
data files and MLLIB_HOME of these tests live there, so its jobs get the code, inputs and data
only through their runtime_env, and the run's events and outputs only come back through the
job's log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.contract.harness import (
    ProbeProject,
    RuntimeUnderTest,
    make_project,
    outcome,
    ray_leftovers,
)


@contextlib.contextmanager
def _uploads() -> Iterator[list[str]]:
    """The packages Ray's client uploads meanwhile, as it logs them (its logger does not
    propagate to pytest's)."""
    sent: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: (  # type: ignore[method-assign]
        sent.append(record.getMessage()) if "Uploading package" in record.getMessage() else None
    )
    logger = logging.getLogger("ray.dashboard.modules.dashboard_sdk")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield sent
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _probe(
    folder: Path, head: Any, env: dict[str, str] | None = None, **tables: dict[str, Any]
) -> ProbeProject:
    """The contract's probe project, shipping its runs to `head`."""
    ray = {"address": head.address, "files": "ship", **tables.pop("ray", {})}
    runtime = RuntimeUnderTest(
        "ray", lambda run: ray_leftovers(head, run), tables={"ray": ray, **tables}
    )
    return make_project(folder, runtime, env=env)


def test_a_shipped_run_reads_its_data_sent_once_and_keeps_secrets_out_of_the_job_table(
    ray_shipped_folder: Path, ray_head: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.job_submission import JobSubmissionClient

    # mllib quiets the logger that says what Ray uploads: this test counts its lines
    monkeypatch.setattr("mllib.runtime.ray.client.QUIET_LOGGERS", ())

    tmp_path = ray_shipped_folder
    project = _probe(tmp_path, ray_head)
    text = f"outside data {secrets.token_hex(8)}\n"  # a package the head has not seen yet
    (project.outside / "train.txt").write_text(text)
    with _uploads() as sent:
        first = project.train()
        uploads = len(sent)
        second = project.train()
        again = len(sent) - uploads

    assert (first.status, second.status) == ("succeeded", "succeeded"), first.error
    assert uploads == 2  # the data file's package, the first run's code and inputs
    assert again == 1  # the second run's own package: the data is on the head already
    ws = Workspace.find(project.root)
    shown = views.show(ws, first.id)
    artifacts = {a["path"]: ws.store.get_bytes(a["sha256"]) for a in shown["artifacts"]}
    seen = json.loads(artifacts["artifacts/env.json"])
    assert seen["SECRET_SETTING"] == "s3cret" and seen["EXTRA"] == "from-env-file"
    assert seen["DATA_PATH"].endswith("/train.txt")
    assert not seen["DATA_PATH"].startswith(str(tmp_path))  # Ray's copy on the node
    assert str(tmp_path) not in seen["cwd"]
    assert outcome(project.root, first.id)["eval"]["chars"] == len(
        (project.outside / "train.txt").read_text()
    )
    assert artifacts["artifacts/notes.txt"] == b"lr=0.1\n"
    assert shown["metrics"]["data_chars"] == len(text)
    assert shown["params"]["data_path"] == str(project.outside / "train.txt")  # as given
    jobs = [
        j
        for j in JobSubmissionClient(ray_head.address).list_jobs()
        if (j.metadata or {}).get("mllib_run") == first.id
    ]
    assert len(jobs) == 1 and "s3cret" not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert str(tmp_path) not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert ray_leftovers(ray_head, first) == []


def test_a_data_file_the_code_leaves_out_is_shipped_by_its_relative_path(
    ray_shipped_folder: Path, ray_head: Any
) -> None:
    project = _probe(ray_shipped_folder, ray_head, env={"DATA_PATH": "local-data/train.txt"})
    (project.root / ".gitignore").write_text("local-data/\n")  # not part of the run's code
    (project.root / "local-data").mkdir()
    (project.root / "local-data" / "train.txt").write_text("ignored by git, read by the run\n")

    run = project.train()

    assert run.status == "succeeded", run.error
    shown = views.show(Workspace.find(project.root), run.id)
    assert shown["metrics"]["data_chars"] == len("ignored by git, read by the run\n")
    assert shown["params"]["data_path"] == "local-data/train.txt"  # as the run was given it


def test_outputs_over_max_output_mb_fail_the_run_saying_so(
    ray_shipped_folder: Path, ray_head: Any
) -> None:
    project = _probe(ray_shipped_folder, ray_head, ray={"max_output_mb": 1})

    result = project.cli("train", "model.py", "--mode=big_artifact")

    assert result.returncode == 1, result.stderr
    assert "Uploading package" not in result.stderr  # Ray's INFO lines are not the user's
    run = views.list_dicts(Workspace.find(project.root), limit=1)[0]
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert "MB compressed, over [ray] max_output_mb = 1, the most a shipped run" in run["error"]
    assert "Raise it in mllib.toml" in run["error"] and "\n" not in run["error"]
    shown = views.show(Workspace.find(project.root), run["id"])
    assert shown["artifacts"] == [] and shown["model_version"] is None
    log = (project.root / ".mllib" / "runs" / run["id"] / "output.log").read_text()
    assert "mllib-ray" not in log and len(log) < 100_000  # the outputs did not travel
    assert ray_leftovers(ray_head, get_run(Workspace.find(project.root).registry, run["id"])) == []


def test_a_killed_shipped_job_is_retried_as_a_new_job(
    ray_shipped_folder: Path, ray_head: Any
) -> None:
    import os
    import signal

    import psutil

    def worker() -> int | None:  # the node runs it in a scratch folder named for the run
        for proc in psutil.process_iter(["cmdline"]):
            line = proc.info["cmdline"] or []
            if "mllib.worker" in line and any(f"mllib-run-{run_id}-" in a for a in line):
                return int(proc.pid)
        return None

    project = _probe(ray_shipped_folder, ray_head, retry={"max_attempts": 2, "backoff_s": 0.5})
    started = project.cli("train", "model.py", "--mode=nap", "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    os.kill(wait_for(worker, timeout=180, what="the worker"), signal.SIGKILL)

    registry = Workspace.find(project.root).registry
    wait_for(lambda: get_run(registry, run_id).finished, timeout=240, what="the run to end")
    run = get_run(registry, run_id)
    assert (run.status, run.attempt) == ("succeeded", 2), run.error
    shown = views.show(Workspace.find(project.root), run_id)
    attempts = [(a["attempt"], a["status"], a["failure_class"]) for a in shown["attempts"]]
    assert attempts == [(1, "failed", "system_error"), (2, "succeeded", None)]
    assert "killed by SIGKILL" in shown["attempts"][0]["reason"]
    assert shown["metric_summary"]["loss"]["count"] == 3 and shown["model_version"] == 1
    assert ray_leftovers(ray_head, run) == []
