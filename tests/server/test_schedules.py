"""Scheduled evaluations the team server runs (a real server on loopback, SQLite and
PostgreSQL): one of a user's evaluation runs made a schedule, `mllib schedules list|show|run-now|
rm` against the server with the real `mllib`, the server's own ticker queuing a due schedule's
run on the newest version of its dataset, and another user seeing none of it. No agents: the
runs stay queued (tests/agents/test_team_server.py has runs that agents run)."""

from __future__ import annotations

import time

import pytest

from mllib.registry.runs import iso
from mllib.server.main import database
from mllib.server.settings import ServerHome
from tests.conftest import Project, wait_for
from tests.monitoring.sentry_ingest import SentryIngest, exception_of
from tests.server.conftest import make_server
from tests.server.test_api import _epoch, login, submit_detached
from tests.server.test_datasets import folder


def make_due(server, schedule_id: str, ago_s: float) -> None:
    """Time passes: the schedule was due `ago_s` seconds ago (its ticker queues it next)."""
    reg = database(ServerHome(server.home))
    try:
        with reg.transaction():
            reg.conn.execute(
                "UPDATE server_schedules SET next_due_at = ? WHERE id = ?",
                (iso(time.time() - ago_s), schedule_id),
            )
    finally:
        reg.close()


def _versions(project: Project, run_id: str) -> list[tuple[str, int]]:
    shown = project.mllib("runs", "show", run_id, "--json").json()
    return [(d["name"], d["version"]) for d in shown["datasets"]]


@pytest.mark.timeout(600)  # some thirty `mllib` commands, and a server per database to set up
def test_the_server_runs_a_users_schedule_and_the_cli_lists_runs_and_removes_it(
    model_project: Project, team_server
):
    team_server.add_user("ivy")
    login(model_project, team_server, "ivy")
    source = folder(model_project, "evals", b"x,y\n1,2\n")
    assert model_project.mllib("data", "upload", source, "--name", "evals").returncode == 0
    template = submit_detached(model_project, "--evaluate", "--data", "DATA_PATH=evals")
    trained = submit_detached(model_project)
    made = model_project.mllib(
        "schedules", "add", template, "--every", "1d", "--fail-under", "accuracy=0.9",
        "--data", "DATA_PATH=evals",
    )  # fmt: skip
    assert made.returncode == 0, made.output
    schedule = model_project.mllib("schedules", "show", made.stdout.strip(), "--json").json()
    assert schedule["template_run_id"] == template and schedule["gates"] == {"accuracy": 0.9}
    assert abs(time.time() + 86400 - _epoch(schedule["next_due_at"])) < 60
    # what cannot be scheduled is a one-line error saying why, and nothing is stored
    not_eval = model_project.mllib("schedules", "add", trained, "--every", "1d")
    assert not_eval.returncode == 2 and "not an evaluation" in not_eval.stderr
    too_often = model_project.mllib("schedules", "add", template, "--every", "5s")
    assert too_often.returncode == 2 and "a minute or more" in too_often.stderr
    here = model_project.mllib("evaluate", "--model", "basic", "--every", "1d")
    assert here.returncode == 4 and "No model 'basic' on the team server" in here.stderr
    with team_server.client("ivy") as http:
        assert len(http.get("/api/v1/schedules").json()) == 1
    (model_project.root.parent / "evals" / "more.csv").write_text("3,4\n")
    assert model_project.mllib("data", "upload", source, "--name", "evals").returncode == 0

    listed = model_project.mllib("schedules", "list", "--json")
    assert listed.returncode == 0, listed.output
    [row] = listed.json()
    assert row["id"] == schedule["id"] and row["every"] == "1d"
    assert row["last"]["run_id"] == template and row["last"]["status"] == "queued"
    table = model_project.mllib("schedules", "list")
    assert schedule["id"] in table.stdout and f"run {template}" in table.stdout

    now = model_project.mllib("schedules", "run-now", schedule["id"], "--detach")
    assert now.returncode == 0, now.output
    again = now.stdout.strip().splitlines()[-1]
    shown = model_project.mllib("runs", "show", again, "--json").json()
    assert shown["rerun_of"] == template and shown["status"] == "queued"
    assert shown["action"] == "train+evaluate" and shown["user"] == "ivy"
    assert _versions(model_project, again) == [("evals", 2)]  # the newest version now

    # time passes: the server's own ticker queues the due run, once, and moves the time on
    make_due(team_server, schedule["id"], 3 * 86400 + 5)
    runs = wait_for(
        lambda: (
            (r := model_project.mllib("schedules", "show", schedule["id"], "--json").json())[
                "runs"
            ][2:]
            and r
        ),
        timeout=60,
        what="the server to queue the due schedule's run",
    )
    ticked = runs["runs"][0]["run_id"]
    assert [r["run_id"] for r in runs["runs"]][1:] == [again, template]
    assert _versions(model_project, ticked) == [("evals", 2)]
    assert _epoch(runs["next_due_at"]) > time.time()  # the missed periods are skipped
    time.sleep(6)  # a later tick queues nothing more
    assert (
        len(model_project.mllib("schedules", "show", schedule["id"], "--json").json()["runs"]) == 3
    )
    text = model_project.mllib("schedules", "show", schedule["id"])
    assert ticked in text.stdout and "--fail-under accuracy=0.9" in text.stdout

    with team_server.client("bo") as http:  # bo sees none of it
        assert http.get("/api/v1/schedules").json() == []
        assert http.get(f"/api/v1/schedules/{schedule['id']}").status_code == 404
        assert http.post(f"/api/v1/schedules/{schedule['id']}/run").status_code == 404

    removed = model_project.mllib("schedules", "rm", schedule["id"])
    assert removed.returncode == 0 and schedule["id"] in removed.stderr
    assert model_project.mllib("schedules", "list", "--json").json() == []
    assert model_project.mllib("runs", "show", ticked, "--json").returncode == 0  # runs stay
    gone = model_project.mllib("schedules", "run-now", schedule["id"], "--detach")
    assert gone.returncode == 4 and len(gone.stderr.strip().splitlines()) == 2


def test_a_due_run_the_server_cannot_queue_is_shown_and_reported_to_sentry(
    model_project: Project, tmp_path
):
    """ivy may have one run queued: her template holds it, so the ticker cannot queue the due
    run. `schedules list` says why, and the server reports it with its own DSN (a local HTTP
    endpoint stands in for Sentry's ingest, whose cloud cannot be reached from tests)."""
    with SentryIngest() as ingest:
        server = make_server(tmp_path, "sqlite")
        server.add_user("ivy", "--max-queued", "1")
        server.start({"SENTRY_DSN": ingest.dsn})
        try:
            login(model_project, server, "ivy")
            template = submit_detached(model_project, "--evaluate")
            made = model_project.mllib("schedules", "add", template, "--every", "1h")
            assert made.returncode == 0, made.output
            schedule_id = made.stdout.strip()
            make_due(server, schedule_id, 5)
            [event] = ingest.wait_events(1)
            row = model_project.mllib("schedules", "list", "--json").json()[0]
        finally:
            server.stop()
    assert row["last_error"] == "ivy already has 1 runs queued (the limit is 1)"
    assert exception_of(event)["value"] == (
        f"Scheduled evaluation {schedule_id} could not run: {row['last_error']}"
    )
    assert event["tags"]["failure_class"] == "user_error"
    assert (event["tags"]["schedule"], event["tags"]["user"]) == (schedule_id, "ivy")
