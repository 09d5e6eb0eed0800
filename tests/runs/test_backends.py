"""One seam for where runs execute: supervise, cancel and reconcile reach the run's backend,
chosen from its recorded runtime and imported only when a run needs it. (The real backends are
covered end to end by tests/runs, tests/contract and tests/agents; here a recording backend
shows that the three entry points go through the seam and nowhere else.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mllib.errors import UsageError
from mllib.registry.runs import RunRecord, finish_run, get_run, update_run
from mllib.runs import backends
from mllib.runs.control import cancel, reconcile
from mllib.runs.launch import locate_model, prepare_run
from mllib.runs.supervisor import supervise
from mllib.workspace import Workspace
from tests.conftest import Project

CALLS: list[tuple[str, str]] = []


class RecordingBackend:
    """Records each call and ends the run the way a real backend would."""

    name = "recording"

    def supervise(self, ws, run, *, echo, cancel_grace_s, on_interrupt) -> RunRecord:
        CALLS.append(("supervise", run.id))
        finish_run(ws.registry, run.id, "succeeded", None, None)
        return get_run(ws.registry, run.id)

    def cancel(self, ws, run, *, timeout_s) -> RunRecord:
        CALLS.append(("cancel", run.id))
        finish_run(ws.registry, run.id, "cancelled", None, "cancelled")
        return get_run(ws.registry, run.id)

    def settle(self, ws, run) -> bool:
        CALLS.append(("settle", run.id))
        return finish_run(ws.registry, run.id, "failed", "system_error", "its supervisor died")


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Runs of the runtime "elsewhere" go to the recording backend."""
    monkeypatch.setitem(backends.BACKENDS, "recording", f"{__name__}:RecordingBackend")
    monkeypatch.setitem(backends.RUNTIME_BACKENDS, "elsewhere", "recording")
    CALLS.clear()
    return CALLS


def _queued_run(model_project: Project) -> tuple[Workspace, RunRecord]:
    target = locate_model(model_project.root / "model.py")
    run = prepare_run(target, ["train"], {}, runtime="elsewhere", runtime_note="test")
    return target.ws, run


def test_supervise_cancel_and_reconcile_go_through_the_runs_backend(
    model_project: Project, elsewhere: list
) -> None:
    ws, supervised = _queued_run(model_project)
    assert supervise(ws, supervised.id).status == "succeeded"

    _, cancelled = _queued_run(model_project)
    assert cancel(ws, cancelled.id).status == "cancelled"

    _, orphan = _queued_run(model_project)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    update_run(ws.registry, orphan.id, supervisor_pid=int(dead.stdout), supervisor_ctime=1.0)
    assert reconcile(ws) == [orphan.id]

    assert elsewhere == [
        ("supervise", supervised.id),
        ("cancel", cancelled.id),
        ("settle", orphan.id),
    ]
    assert get_run(ws.registry, orphan.id).error == "its supervisor died"


def test_each_runtime_has_one_backend_and_unknown_names_are_refused() -> None:
    assert [backends.backend_name(r) for r in ("process", "docker", None, "ssh")] == [
        "local",
        "local",
        "local",
        "agents",
    ]
    with pytest.raises(UsageError, match="Unknown run backend 'nope'"):
        backends.get_backend("nope")


def test_choosing_a_backend_imports_only_that_backend() -> None:
    probe = (
        "import json, sys; from mllib.runs.backends import get_backend; get_backend('local'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('mllib.agents', "
        "'paramiko')))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert json.loads(result.stdout) == ["mllib.agents"]  # the package's name constant only
