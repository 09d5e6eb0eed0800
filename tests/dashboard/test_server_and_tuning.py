"""The queue pane reading a real team server's queue (the server started as tests/server starts
it, the runs submitted with the real `mllib`), and the tuning pane over a study tuned with real
runs, driven by Pilot."""

from __future__ import annotations

from textual.widgets import DataTable

from mllib.dashboard.data.queue import LocalQueue, ServerQueue
from mllib.display import fmt_duration, fmt_value
from mllib.workspace import Workspace
from tests.conftest import Project
from tests.dashboard.conftest import cells, drive, make_app
from tests.tuning.test_tune import MODEL as QUAD


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


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
    queued_at = {r["run_id"]: _epoch(r["queued_at"]) for r in expected["queued"]}
    later = max(queued_at.values()) + 125  # the dashboard's clock
    ws = Workspace.find(model_project.root)
    app = make_app(ws, now=later)
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
        # the model's name, and how long each has waited since the server queued it
        assert {r[3] for r in rows} == {r["model"] for r in expected["queued"]} == {"Basic"}
        assert {r[2]: r[5] for r in rows} == {
            run_id: fmt_duration(later - at) for run_id, at in queued_at.items()
        }
        assert fmt_duration(later - max(queued_at.values())) == "2m05s"
        heading = str(app.query_one("#queue-heading").render())
        assert f"team server {team_server.url}" in heading and "2 queued or running" in heading

    drive(app, steps)


def test_the_agents_are_the_team_servers_and_k_has_it_check_them(project: Project, team_server):
    # this project's own agent is not shown: the server's are
    project.write("mllib.toml", '[[agents]]\nname = "mine"\nhost = "127.0.0.1"\n')
    login = project.mllib("login", team_server.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    app = make_app(Workspace.find(project.root))

    async def steps(pilot):
        await pilot.press("2")
        rows = await _until_rows(pilot, "#agents")
        # AGENT, ADDRESS, GPUS, SLOTS, OCCUPIED BY, REACHABLE
        assert rows == [["far", team_server.far, "2", "0/2", "-", "not checked"]]
        assert "Agents of the team server" in str(app.query_one("#agents-heading").render())
        await pilot.press("k")  # the server asks its agent now
        table = app.query_one("#agents", DataTable)
        for _ in range(200):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause(0.05)
            if cells(table)[0][5] != "checking…":
                break
        reachable = cells(table)[0][5]
        assert reachable.startswith(f"no: Cannot reach agent far at {team_server.far}")

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
        # below: the study's trials, each with the best value up to it
        trials = cells(app.query_one("#trials", DataTable))
        values = [t["value"] for t in study["trials"]]
        assert trials == [
            [str(t["number"]), "complete", fmt_value(t["value"]), fmt_value(min(values[: i + 1])),
             f"x={fmt_value(t['params']['x'])}", t["run_id"]]
            for i, t in enumerate(study["trials"])
        ]  # fmt: skip
        assert "Trials of quad: the best val_loss" in str(app.query_one("#trials-heading").render())
        await pilot.press("enter")  # the best trial's run
        assert app.screen.run_id == study["best_run_id"]
        await pilot.press("escape")
        app.query_one("#trials", DataTable).focus()
        await pilot.press("down", "enter")  # the second trial's run
        assert app.screen.run_id == study["trials"][1]["run_id"]

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
