"""The steps every backend shares (mllib.runs.backend.Backend), shown with the fake backend that
ships with mllib (mllib.runs.fake) against a real registry, real signals and real processes:
claiming a run, Ctrl-C and its grace period, detaching, cancelling through the supervising process
or without one, settling orphans, following logs, secret params discarded, the final record. The
real backends run the same steps end to end in tests/runs, tests/contract and tests/agents.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mllib import plugins
from mllib.errors import UsageError
from mllib.protocol.failure import USER_ERROR, Outcome
from mllib.registry.artifacts import model_version_of
from mllib.registry.runs import RunRecord, finish_run, get_run, update_run
from mllib.runs import backend as backends
from mllib.runs.backend import backend_name, get_backend
from mllib.runs.control import cancel, reconcile, supervise
from mllib.runs.fake import FakeBackend, FakeExecution, run_forever
from mllib.runs.prepare import prepare_run
from mllib.runs.target import locate_model
from mllib.store import put_tree
from mllib.workspace import Workspace
from tests.conftest import Project, model_source, wait_for


def _queued_run(
    project: Project, runtime: str = "process", cli: dict | None = None
) -> tuple[Workspace, RunRecord]:
    target = locate_model(project.root / "model.py")
    run = prepare_run(target, ["train"], cli or {}, runtime=runtime, runtime_note="test")
    return target.ws, run


@pytest.fixture
def secret_project(project: Project) -> Project:
    """A model with secret params: a run given one on the command line has a secret params file."""
    project.write("model.py", model_source("secrets"))
    return project


def _secret_file(ws: Workspace, run: RunRecord) -> Path:
    return ws.run_folder(run).path / ws.run_folder(run).SECRET_PARAMS


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_supervise_claims_the_run_and_records_its_outcome_and_start(secret_project) -> None:
    ws, run = _queued_run(secret_project, cli={"api_key": "s3cret"})
    assert _secret_file(ws, run).exists()
    backend = FakeBackend(lambda e: Outcome("failed", USER_ERROR, "boom") if e.polls == 3 else None)

    record = backend.supervise(ws, run)

    assert (record.status, record.failure_class, record.error) == ("failed", USER_ERROR, "boom")
    assert record.supervisor_pid == os.getpid() and record.started_at and record.ended_at
    assert backend.calls == ["start", "poll", "poll", "poll", "finish", "close"]
    assert not _secret_file(ws, run).exists()  # secrets outlive no supervision


def test_a_succeeded_run_registers_its_model_in_the_same_record(model_project, tmp_path) -> None:
    ws, run = _queued_run(model_project)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x00" * 16)
    tree = put_tree(ws.store, tmp_path / "model").sha256

    def trained(execution: FakeExecution) -> Outcome:
        execution.model = tree
        return Outcome("succeeded")

    record = FakeBackend(trained).supervise(ws, run)
    assert record.status == "succeeded"
    assert model_version_of(ws.registry, run.id)["version"] == 1


def test_a_run_that_cannot_start_gets_the_outcome_its_backend_gives(secret_project) -> None:
    ws, run = _queued_run(secret_project, cli={"api_key": "s3cret"})
    failed = Outcome("failed", USER_ERROR, "the runtime could not start: bad requirement")
    backend = FakeBackend(start_fails=failed)

    record = backend.supervise(ws, run)

    assert (record.status, record.failure_class, record.error) == (
        "failed",
        USER_ERROR,
        failed.message,
    )
    assert backend.calls == ["start"]
    assert not _secret_file(ws, run).exists()


def test_a_run_cancelled_before_its_supervisor_took_over_is_never_started(model_project) -> None:
    ws, run = _queued_run(model_project)
    finish_run(ws.registry, run.id, "cancelled", None, "cancelled")
    backend = FakeBackend()
    assert backend.supervise(ws, run).status == "cancelled"
    assert backend.calls == []


def test_ctrl_c_stops_with_the_grace_period_and_a_second_one_without(model_project) -> None:
    model_project.write("mllib.toml", "[runtime]\ncancel_grace_s = 7\n")
    ws, run = _queued_run(model_project)

    def interrupted_twice(execution: FakeExecution) -> Outcome | None:
        if execution.polls in (2, 4):  # Ctrl-C, and Ctrl-C again while it stops
            os.kill(os.getpid(), signal.SIGINT)
        return Outcome("cancelled") if len(execution.stops) == 2 else None

    backend = FakeBackend(interrupted_twice)
    record = backend.supervise(ws, run)

    assert (record.status, record.error) == ("cancelled", "cancelled")
    assert backend.executions[0].stops == [7.0, 0]
    # The signal handlers are the process's own again afterwards.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_asks_a_backend_whose_runs_go_on_and_cancel_stops_it(model_project) -> None:
    ws, run = _queued_run(model_project)
    asked = []

    def interrupted(execution: FakeExecution) -> Outcome | None:
        if execution.polls == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return run_forever(execution)

    backend = FakeBackend(interrupted, can_detach=True)
    record = backend.supervise(ws, run, on_interrupt=lambda: asked.append(1) or "cancel")
    assert record.status == "cancelled" and asked == [1]
    assert backend.calls[-3:] == ["poll", "finish", "close"] and "stop" in backend.calls


def test_detaching_leaves_the_run_to_a_background_supervisor(model_project) -> None:
    """The fake backend detaches; the run's own backend (local: a real worker) then finishes it
    in the background supervisor that detaching started."""
    ws, run = _queued_run(model_project)
    notes: list[str] = []

    def interrupted(execution: FakeExecution) -> Outcome | None:
        if execution.polls == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return None

    backend = FakeBackend(interrupted, can_detach=True, keeps_secret_params=True)
    record = backend.supervise(ws, run, on_interrupt=lambda: "detach", notify=notes.append)

    assert not record.finished and "stop" not in backend.calls
    assert notes == [
        f"detached; run {run.id} goes on. Follow it: mllib runs logs {run.id} --follow"
    ]
    done = wait_for(lambda: get_run(ws.registry, run.id).finished, timeout=60, what="the run")
    finished = get_run(ws.registry, run.id)
    assert done and finished.status == "succeeded", finished.error
    assert finished.supervisor_pid != os.getpid()


SUPERVISE_FOREVER = """
import sys
from mllib.registry.runs import get_run
from mllib.runs.fake import FakeBackend, run_forever
from mllib.workspace import Workspace
ws = Workspace.find(sys.argv[1])
record = FakeBackend(run_forever).supervise(ws, get_run(ws.registry, sys.argv[2]))
print(record.status, flush=True)
"""


def test_cancel_stops_the_supervising_process_which_cancels_the_run(secret_project) -> None:
    ws, run = _queued_run(secret_project, cli={"api_key": "s3cret"})
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE_FOREVER, str(secret_project.root), run.id],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: get_run(ws.registry, run.id).status == "running", what="the supervisor")
    backend = FakeBackend()

    record = backend.cancel(ws, get_run(ws.registry, run.id), timeout_s=30)

    assert record.status == "cancelled"
    assert supervisor.communicate(timeout=30)[0].strip() == "cancelled"
    assert backend.calls == []  # the supervisor cancelled it, not this process
    assert not _secret_file(ws, run).exists()


def test_cancel_of_a_run_nobody_supervises_ends_it_here(secret_project) -> None:
    ws, run = _queued_run(secret_project, cli={"api_key": "s3cret"})
    update_run(ws.registry, run.id, supervisor_pid=_dead_pid(), supervisor_ctime=1.0)
    backend = FakeBackend()

    record = backend.cancel(ws, get_run(ws.registry, run.id))

    assert (record.status, backend.calls) == ("cancelled", ["cancel_unsupervised"])
    assert not _secret_file(ws, run).exists()


def test_settle_fails_orphans_only(secret_project) -> None:
    ws, orphan = _queued_run(secret_project, cli={"api_key": "s3cret"})
    _, supervised = _queued_run(secret_project)  # supervised by this process
    update_run(ws.registry, orphan.id, supervisor_pid=_dead_pid(), supervisor_ctime=1.0)
    backend = FakeBackend()

    assert backend.settle(ws, orphan) is True
    assert backend.settle(ws, supervised) is False
    assert backend.settle(ws, orphan) is False  # already settled

    assert get_run(ws.registry, orphan.id).error == FakeBackend.ORPHANED
    assert get_run(ws.registry, supervised.id).status == "queued"
    assert backend.calls == ["orphaned"]
    assert not _secret_file(ws, orphan).exists()


def test_logs_follow_the_output_until_the_run_ends(model_project) -> None:
    ws, run = _queued_run(model_project)
    log = ws.run_folder(run).log_file

    def produce() -> None:
        for i in range(5):
            with open(log, "ab") as out:
                out.write(f"line {i}\n".encode())
        finish_run(ws.registry, run.id, "succeeded", None, None)

    threading.Timer(0.3, produce).start()
    written: list[bytes] = []
    status = FakeBackend().logs(ws, run, written.append, follow=True, poll_s=0.05)

    assert status == "succeeded"
    assert b"".join(written) == b"".join(f"line {i}\n".encode() for i in range(5))


def test_following_the_log_of_an_orphan_settles_it(model_project) -> None:
    ws, run = _queued_run(model_project)
    update_run(ws.registry, run.id, supervisor_pid=_dead_pid(), supervisor_ctime=1.0)
    assert FakeBackend().logs(ws, run, lambda chunk: None, follow=True) == "failed"


def test_a_backend_that_does_not_place_runs_refuses_a_pin(model_project) -> None:
    ws, run = _queued_run(model_project)
    with pytest.raises(UsageError, match="cannot be pinned to 'gpu1'"):
        get_backend("local").check_placement(ws, "gpu1")
    with pytest.raises(UsageError, match="cannot be pinned to 'gpu1'"):
        get_backend("local").submit(ws, run, pin="gpu1")
    assert get_run(ws.registry, run.id).status == "queued"
    assert get_backend("local").attempts(ws, run) == []


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of the runtime "elsewhere" go to the fake backend, registered by name."""
    monkeypatch.setitem(plugins.BACKENDS, "fake", "mllib.runs.fake:FakeBackend")
    monkeypatch.setitem(plugins.RUNTIME_BACKENDS, "elsewhere", "fake")


def test_supervise_cancel_and_reconcile_go_through_the_runs_backend(
    model_project: Project, elsewhere: None
) -> None:
    ws, supervised = _queued_run(model_project, "elsewhere")
    assert supervise(ws, supervised.id).status == "succeeded"

    _, cancelled = _queued_run(model_project, "elsewhere")
    assert cancel(ws, cancelled.id).status == "cancelled"

    _, orphan = _queued_run(model_project, "elsewhere")
    update_run(ws.registry, orphan.id, supervisor_pid=_dead_pid(), supervisor_ctime=1.0)
    assert reconcile(ws) == [orphan.id]
    assert get_run(ws.registry, orphan.id).error == FakeBackend.ORPHANED


def test_each_runtime_has_one_backend_and_unknown_names_are_refused() -> None:
    assert [backend_name(r) for r in ("process", "docker", None, "ssh")] == [
        "local",
        "local",
        "local",
        "agents",
    ]
    with pytest.raises(UsageError, match="Unknown run backend 'nope'"):
        backends.get_backend("nope")


def test_choosing_a_backend_imports_only_that_backend() -> None:
    probe = (
        "import json, sys; from mllib.runs.backend import get_backend; get_backend('local'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('mllib.agents', "
        "'paramiko')))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert json.loads(result.stdout) == [], result.stderr
