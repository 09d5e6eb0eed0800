"""Runs shipped to a Ray node that does not see this machine's files (`[ray] files = "ship"`).

The head here runs in its own mount namespace where this session's temp folder (every project,
run folder, data file and venv cache of the tests) is an empty tmpfs (tests/ray/head.py
`hide`): its jobs get the code, inputs and data only through their runtime_env, and the run's
events and outputs only come back through the job's log.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mllib
from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.workspace import Workspace
from tests.conftest import running_head, wait_for
from tests.contract.harness import (
    ProbeProject,
    RuntimeUnderTest,
    make_project,
    outcome,
    ray_leftovers,
)
from tests.contract.test_parity import _assert_identical, _results, _template


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
    logger.addHandler(handler)
    try:
        yield sent
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def hidden_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    hidden = tmp_path_factory.getbasetemp()
    with running_head(hide=(hidden,)) as head:
        assert list(Path(f"/proc/{head.process.pid}/root{hidden}").iterdir()) == []
        yield head


def _probe(folder: Path, head: Any, **tables: dict[str, Any]) -> ProbeProject:
    """The contract's probe project, shipping its runs to `head`."""
    return make_project(
        folder,
        RuntimeUnderTest(
            "ray",
            lambda run: ray_leftovers(head, run),
            tables={"ray": {"address": head.address, "files": "ship"}, **tables},
        ),
    )


def _ship(root: Path, head: Any) -> None:
    with (root / "mllib.toml").open("a") as toml:
        toml.write(f'\n[ray]\naddress = "{head.address}"\nfiles = "ship"\n')


@pytest.mark.timeout(600)
@pytest.mark.parametrize("template", ["minimal", "sklearn"])
def test_a_shipped_run_trains_and_predicts_as_a_process_does(
    template: str, tmp_path: Path, image_repository: str, hidden_head: Any
) -> None:
    root = _template(template, tmp_path, image_repository)
    _ship(root, hidden_head)
    model = str(root / "model.py")

    runs = {
        name: mllib.train(model, evaluate=True, runtime=name, seed=3, echo=None)
        for name in ("process", "ray")
    }

    # the same params, metric series, evaluation, model bytes, and prediction (made on Ray too)
    _assert_identical(_results(root, runs, {"process": "process", "ray": "ray"}))
    log = (root / ".mllib" / "runs" / runs["ray"].id / "output.log").read_text()
    assert "mllib-ray" not in log  # the channel's records are taken out of the output


def test_a_shipped_run_reads_its_data_sent_once_and_keeps_secrets_out_of_the_job_table(
    tmp_path: Path, hidden_head: Any
) -> None:
    from ray.job_submission import JobSubmissionClient

    project = _probe(tmp_path, hidden_head)
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
    assert shown["metrics"]["data_chars"] == len("outside data\nsecond line\nthird\n")
    jobs = [
        j
        for j in JobSubmissionClient(hidden_head.address).list_jobs()
        if (j.metadata or {}).get("mllib_run") == first.id
    ]
    assert len(jobs) == 1 and "s3cret" not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert str(tmp_path) not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert ray_leftovers(hidden_head, first) == []


def test_a_shipped_run_is_cancelled_leaving_nothing_running(
    tmp_path: Path, hidden_head: Any
) -> None:
    project = _probe(tmp_path, hidden_head)
    started = project.cli("train", "model.py", "--mode=sleep", "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    log = project.root / ".mllib" / "runs" / run_id / "output.log"
    wait_for(
        lambda: log.exists() and "sleeping" in log.read_text(),
        timeout=180,
        what="the worker to sleep",
    )

    cancelled = project.cli("runs", "cancel", run_id)

    assert cancelled.returncode == 0, cancelled.stderr
    registry = Workspace.find(project.root).registry
    wait_for(lambda: get_run(registry, run_id).finished, timeout=120, what="the run to end")
    assert get_run(registry, run_id).status == "cancelled"
    assert ray_leftovers(hidden_head, get_run(registry, run_id)) == []
    assert "train says hello on stdout" in log.read_text()
