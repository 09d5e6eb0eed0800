"""The queue pane reading a real team server's queue (the server started as tests/server starts
it, the runs submitted with the real `mllib`), and the tuning pane over a study tuned with real
runs, driven by Pilot."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from mllib.dashboard.data import LocalQueue, ServerQueue
from mllib.display import fmt_value
from mllib.workspace import Workspace
from tests.conftest import Project
from tests.dashboard.conftest import cells, drive, make_app
from tests.server.conftest import make_server
from tests.tuning.test_tune import MODEL as QUAD


@pytest.fixture
def team_server(tmp_path):
    """A running team server (SQLite) with users ana (admin) and bo; no agents, so what is
    submitted stays queued."""
    server = make_server(tmp_path, "sqlite")
    server.add_user("ana", "--admin")
    server.add_user("bo")
    server.start()
    yield server
    server.stop()


async def _until_rows(pilot, table_id: str, tries: int = 200) -> list[list[str]]:
    """Wait (up to ~10 s) for the background read to fill the table."""
    table = pilot.app.query_one(table_id, DataTable)
    for _ in range(tries):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.05)
        rows = cells(table)
        if rows:
            return rows
    raise AssertionError(f"{table_id} stayed empty")


def test_the_queue_pane_shows_the_team_servers_queue_by_user_and_priority(
    model_project: Project, team_server
):
    login = model_project.mllib("login", team_server.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    submitted = {}
    for priority in ("1", "3"):
        result = model_project.mllib("train", "model.py", "--remote", "--detach",
                                     "--priority", priority)  # fmt: skip
        assert result.returncode == 0, result.output
        submitted[result.stdout.strip().splitlines()[-1]] = priority
    expected = model_project.mllib("queue", "--json").json()
    ws = Workspace.find(model_project.root)
    app = make_app(ws)
    assert isinstance(app.data.queue, ServerQueue)

    async def steps(pilot):
        await pilot.press("2")
        rows = await _until_rows(pilot, "#queue-table")
        # USER, PRIORITY, RUN, MODEL, STATUS, WAITING, WHERE: higher priority first
        assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
            ("bo", p, run_id, "queued")
            for run_id, p in sorted(submitted.items(), key=lambda i: i[1], reverse=True)
        ]
        places = {r["run_id"]: f"#{r['position']} ({r['gpus']} GPU)" for r in expected["queued"]}
        assert all(r["gpus"] == 1 for r in expected["queued"])
        assert {r[2]: r[6] for r in rows} == places
        heading = str(app.query_one("#queue-heading").render())
        assert f"team server {team_server.url}" in heading and "2 queued or running" in heading

    drive(app, steps)


def test_without_a_team_server_the_queue_is_the_local_runs(project: Project):
    project.write("mllib.toml", 'name = "p"\n')
    assert isinstance(make_app(Workspace.find(project.root)).data.queue, LocalQueue)


def test_the_tuning_pane_shows_each_study_with_its_trials_and_best_value(project: Project):
    project.write("model.py", QUAD)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    result = project.mllib(
        "tune", "model.py", "--param", "x=uniform:-4:4", "--metric", "val_loss", "--trials", "2",
        "--name", "quad", "--sampler", "random", "--steps=1",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    study = project.mllib("tune", "show", "quad", "--json").json()
    app = make_app(Workspace.find(project.root))

    async def steps(pilot):
        await pilot.press("4")
        assert app.active_pane == "tuning"
        rows = await _until_rows(pilot, "#tuning-table")
        assert len(rows) == 1
        name, model, status, trials, running, pruned, failed, objective, best, best_run, _ = rows[0]
        assert (name, model, status) == ("quad", study["model"], "finished")
        assert trials == "2/2 complete, 2 in all"
        assert (running, pruned, failed) == ("0", "0", "0")
        assert objective == "val_loss ↓"
        assert best == fmt_value(study["best_value"]) and best_run == study["best_run_id"]
        await pilot.press("enter")  # the best trial's run
        assert app.screen.run_id == study["best_run_id"]

    drive(app, steps)


def test_the_tuning_pane_is_in_the_command_palette(project: Project):
    project.write("mllib.toml", 'name = "p"\n')
    app = make_app(Workspace.find(project.root))

    async def steps(pilot):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Tuning studies" in titles
        await pilot.press("4")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert cells(app.query_one("#tuning-table", DataTable)) == []
        assert "No studies yet" in str(app.query_one("#tuning-heading").render())

    drive(app, steps)
