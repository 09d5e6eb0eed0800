"""The Runs pane, a run's screen and compare over a real team server (SQLite, its agent silent so
runs stay queued; started as tests/server starts it, runs submitted with the real `mllib`): a
rerun made there, reads that never hold up a key while the server is slow (a real proxy on
loopback holds its requests), and curves read one metric at a time."""

from __future__ import annotations

from mllib.dashboard.compare import CompareScreen
from mllib.dashboard.data.run_sources import ServerRuns, thinned
from mllib.dashboard.data.server import ServerLink
from mllib.dashboard.detail import RunScreen
from mllib.registry.metrics import insert_points
from mllib.server.main import database
from mllib.server.settings import ServerHome
from mllib.workspace import Workspace
from tests.conftest import Project
from tests.dashboard.conftest import cells, drive, make_app, until
from tests.slow_proxy import SlowProxy


def _submit(project: Project, *params: str) -> str:
    result = project.mllib("train", "model.py", "--remote", "--detach", *params)
    assert result.returncode == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _log_points(server, points: dict[str, list[tuple[int, str, int, float]]]) -> None:
    """Metric points of queued runs, written into the server's database as its agents' syncs
    write them (the agent here never runs anything)."""
    reg = database(ServerHome(server.home))
    try:
        for run_id, rows in points.items():
            insert_points(reg, run_id, [(*row, 0.0) for row in rows])
    finally:
        reg.close()


def _points(base: int, offset: float) -> list[tuple[int, str, int, float]]:
    """loss and accuracy interleaved, as a training loop logs them."""
    rows = []
    for step in range(40):
        rows.append((base + 2 * step + 1, "loss", step, 1.0 / (step + 1) + offset))
        rows.append((base + 2 * step + 2, "accuracy", step, 0.5 + step / 100 + offset))
    return rows


async def _soon(pilot, ready, what: str, tries: int = 200):
    """Wait for `ready()` without waiting for reads under way (they may be held)."""
    for _ in range(tries):
        await pilot.pause(0.05)
        if found := ready():
            return found
    raise AssertionError(f"timed out waiting for {what}")


def _text(widget) -> str:
    return str(widget.render())


def test_R_in_the_runs_pane_reruns_the_run_on_the_team_server_with_its_params(
    model_project: Project, team_server
):
    login = model_project.mllib("login", team_server.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    original = _submit(model_project, "--learning_rate=0.5", "--name=again", "--epochs=2")
    app = make_app(Workspace.find(model_project.root))
    assert app.data.runs.remote

    async def steps(pilot):
        table = app.runs.table
        await until(pilot, lambda: len(table.rows) == 1, "the run's row")
        await pilot.press("R")
        assert f"Run {original} again?" in _text(app.screen.query_one("#question"))
        await pilot.press("y")
        rows = await until(pilot, lambda: len(table.rows) == 2 and cells(table), "the rerun's row")
        assert rows[1][0].strip() == original and rows[0][3] == "queued"

    drive(app, steps)
    listed = model_project.mllib("runs", "list", "--json").json()
    assert [r["id"] for r in listed][1:] == [original] and len(listed) == 2
    again = model_project.mllib("runs", "show", listed[0]["id"], "--json").json()
    first = model_project.mllib("runs", "show", original, "--json").json()
    assert again["rerun_of"] == original and again["status"] == "queued"
    assert again["params"] == first["params"]
    assert (first["params"]["learning_rate"], first["params"]["name"]) == (0.5, "again")


def test_keys_work_while_a_slow_team_server_answers(model_project: Project, team_server):
    """Opening a run, `m` and compare read the server in the background: while the proxy holds
    their requests the screens say so, and escape, `m`, compare's keys and `q` are handled."""
    proxy = SlowProxy(team_server.port)
    login = model_project.mllib("login", proxy.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    first, second = _submit(model_project), _submit(model_project)
    _log_points(team_server, {first: _points(0, 0.0), second: _points(0, 0.1)})
    app = make_app(Workspace.find(model_project.root), metric="loss")

    async def steps(pilot):
        table = app.runs.table
        await until(pilot, lambda: len(table.rows) == 2, "the runs")
        proxy.hold()
        await pilot.press("enter")  # the newest run's screen: its read waits at the proxy
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.run_id == second
        await _soon(pilot, lambda: proxy.waiting, "the run's read to reach the proxy")
        assert "loading from the team server" in _text(screen.query_one("#title"))
        await pilot.press("escape")  # handled while the read waits
        assert app.screen is not screen and proxy.waiting

        await pilot.press("m")  # the metric names: read in the background too
        assert "reading the metric names" in _text(app.query_one("#runs-status"))
        proxy.release()
        await _soon(pilot, lambda: app.screen.__class__.__name__ == "Pick", "the metric picker")
        await pilot.press("escape")
        await until(pilot, lambda: "reading" not in _text(app.query_one("#runs-status")), "idle")

        proxy.hold()
        await pilot.press("space", "down", "space", "c")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        await _soon(pilot, lambda: proxy.waiting, "compare's read to reach the proxy")
        assert "loading" in _text(compare.query_one("#compare-title"))
        proxy.release()
        await until(pilot, lambda: compare.result, "the comparison")
        assert sorted(compare.run_ids) == sorted([first, second])
        assert compare.metric == "loss"
        proxy.hold()
        await pilot.press("n")  # the next metric's curves: read in the background
        await _soon(pilot, lambda: proxy.waiting, "the curves' read to reach the proxy")
        assert "loading accuracy" in _text(compare.query_one("#compare-chart"))
        proxy.release()
        await until(pilot, lambda: compare.metric == "accuracy" and not compare.due, "accuracy")
        assert "accuracy (n: next metric)" in _text(compare.query_one("#compare-chart"))
        await pilot.press("escape")

        proxy.hold()
        await pilot.press("enter")
        await _soon(pilot, lambda: proxy.waiting, "the run's read to reach the proxy")
        await pilot.press("q")  # quits at once, the read still held
        assert app.return_code == 0 and proxy.waiting
        proxy.release()

    try:
        drive(app, steps)
    finally:
        proxy.close()


def test_compare_reads_only_the_overlaid_metric_and_draws_the_same_curves(
    model_project: Project, team_server
):
    login = model_project.mllib("login", team_server.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    first, second = _submit(model_project), _submit(model_project)
    logged = {first: _points(0, 0.0), second: _points(0, 0.1)}
    _log_points(team_server, logged)

    with team_server.client("bo") as http:
        answer = http.get(f"/api/v1/runs/{first}/metrics", params={"name": "loss"}).json()
        later = http.get(f"/api/v1/runs/{first}/metrics", params={"name": "loss", "after": 41})
        everything = http.get(f"/api/v1/runs/{first}/metrics").json()
        empty = http.get(f"/api/v1/runs/{first}/metrics", params={"name": ""})
    losses = [
        [seq, name, step, value] for seq, name, step, value in logged[first] if name == "loss"
    ]
    assert answer["points"] == losses
    assert later.json()["points"] == [p for p in losses if p[0] > 41]
    assert len(everything["points"]) == 80  # without a name: every metric's
    assert empty.status_code == 422

    ws = Workspace.find(model_project.root)
    runs = ServerRuns(ws, ServerLink(ws, team_server.url))
    try:
        curves = runs.series([first, second], "loss")
    finally:
        runs.close()
    app = make_app(ws, metric="loss")

    async def steps(pilot):  # the run screen reads the metric it shows, and no other
        await until(pilot, lambda: len(app.runs.table.rows) == 2, "the runs")
        await pilot.press("down", "enter")
        screen = app.screen
        chart = screen.query_one("#chart")
        await until(pilot, lambda: "(1/2, n: next)" in chart.title, "the loss curve")
        assert screen.run_id == first and list(screen.curves.curves) == ["loss"]
        assert screen.curves.curves["loss"].count == 40
        await pilot.press("n")
        await until(pilot, lambda: "(2/2, n: next)" in chart.title, "the accuracy curve")
        assert list(screen.curves.curves) == ["accuracy"]
        assert screen.curves.curves["accuracy"].count == 40

    drive(app, steps)
    # the same curves as thinning every point, read and filtered here, gives
    assert curves == {
        run_id: thinned([(step, value) for _, name, step, value in rows if name == "loss"])
        for run_id, rows in logged.items()
    }
    assert curves[first] == ([p[2] for p in losses], [p[3] for p in losses])
