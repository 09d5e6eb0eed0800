"""A run queued on the team server stops when its caller's cancel flag is raised, as a tuning
study stops a pruned trial (`CancelFlag.request()` from another thread): the run is taken out of
the server's queue and recorded cancelled there and here. The server has no agents here, so
runs stay queued; a running one cancelled on its agent: tests/agents/test_team_server.py."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import Project
from tests.server.test_api import login


def start_on_thread(project: Project, flag) -> tuple[threading.Thread, dict]:
    """mllib.runs.api.train(remote=True) on a thread of this process, as a study's trial runs."""
    from mllib.runs import api

    got: dict = {}

    def run() -> None:
        try:
            got["record"] = api.train(
                str(project.root / "model.py"),
                remote=True,
                echo=None,
                flag=flag,
                on_prepared=lambda record: got.setdefault("id", record.id),
            )
        except BaseException as exc:  # reported by the test
            got["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def server_view(server, user: str, run_id: str) -> tuple[dict, list[str]]:
    with server.client(user) as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        queue = http.get("/api/v1/queue").json()
    return run, [r["run_id"] for r in queue["queued"] + queue["running"]]


@pytest.mark.parametrize("when", ["while queued", "before it was followed"])
def test_a_raised_flag_takes_the_run_out_of_the_servers_queue(
    model_project: Project, team_server, when: str
):
    from mllib.runs.backend import CancelFlag

    login(model_project, team_server, "bo")
    flag = CancelFlag()
    if when == "before it was followed":
        flag.request()  # a trial pruned while its run was being submitted
    thread, got = start_on_thread(model_project, flag)
    deadline = time.monotonic() + 60
    while "id" not in got and "error" not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "error" not in got, got.get("error")
    run_id = got["id"]
    if when == "while queued":
        time.sleep(1.0)  # followed for a while: it waits in the queue (no agents)
        assert thread.is_alive() and server_view(team_server, "bo", run_id)[0]["status"] == "queued"
        flag.request()
    thread.join(timeout=60)
    assert not thread.is_alive() and "error" not in got, got.get("error")
    assert got["record"].status == "cancelled"
    run, waiting = server_view(team_server, "bo", run_id)
    assert run["status"] == "cancelled" and run_id not in waiting
    local = model_project.mllib("runs", "show", run_id, "--json", "--local").json()
    assert local["status"] == "cancelled"
