"""The run, compare, queue and deployments screens, and the command palette, driven by Pilot."""

from __future__ import annotations

from textual.widgets import DataTable, Log, Static

from mllib.dashboard.compare import CompareScreen
from mllib.dashboard.detail import RunScreen
from mllib.dashboard.dialogs import Confirm
from mllib.dashboard.plot import Chart
from mllib.registry.environments import set_environment
from mllib.registry.metrics import insert_points, set_eval_metrics
from mllib.registry.runs import RunRecord, create_run
from mllib.workspace import Workspace
from tests.dashboard.conftest import cells, drive, make_app, refresh


def _text(widget) -> str:
    return str(widget.render())


def test_the_run_screen_shows_params_evaluation_environment_and_artifacts_as_written(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        app.open_run("bbbb00000002")
        await pilot.pause()
        info = _text(app.screen.query_one("#info-text", Static))
        assert "note: plain" in info and "learning_rate: 0.01" in info
        assert "accuracy: 0.93" in info and "f1: 0.91" in info
        assert "model.pkl: model, 2,048 B" in info
        assert "runtime: process" in info and "user: ana" in info
        assert "succeeded" in _text(app.screen.query_one("#title", Static))
        app.pop_screen()
        app.open_run("aaaa00000001")
        await pilot.pause()
        assert "note: [b]bold?[/b]" in _text(app.screen.query_one("#info-text", Static))
        app.pop_screen()
        app.open_run("cccc00000003")
        await pilot.pause()
        # an error with markup and an escape sequence: shown as written, the escape made visible
        assert "ValueError: [red]x[/red]\\e[2J" in _text(app.screen.query_one("#info-text", Static))

    drive(app, steps)


def test_the_run_screen_shows_a_later_evaluation_and_the_recorded_environment(seeded):
    reg = seeded.registry
    set_environment(
        reg,
        "bbbb00000002",
        {
            "python": "3.11.2", "implementation": "CPython", "platform": "Linux-6.1-x86_64",
            "cpu": "x86_64", "cpu_count": 2, "gpus": [], "packages": {"numpy": "2.1.0"},
            "packages_hash": "feed" * 16, "runtime": "venv", "runtime_id": "venv-1a2b",
            "numeric_env": {"OMP_NUM_THREADS": "1"},
        },
    )  # fmt: skip
    evaluation = RunRecord(
        "abcd00000042", "m", "evaluate", "succeeded", "2026-03-01T13:00:00.000000Z",
        ended_at="2026-03-01T13:00:05.000000Z", source_run_id="bbbb00000002",
    )  # fmt: skip
    create_run(reg, evaluation, {}, {})
    set_eval_metrics(reg, "abcd00000042", {"accuracy": 0.97})
    app = make_app(seeded)

    async def steps(pilot):
        app.open_run("bbbb00000002")
        await pilot.pause()
        info = _text(app.screen.query_one("#info-text", Static))
        # the training run shows its latest evaluation (a later `mllib evaluate`) and who made it
        assert "accuracy: 0.97" in info and "by: abcd00000042 (latest of 2)" in info
        assert (
            "python: 3.11.2 (CPython)" in info and "packages: 1 (sha256 feedfeedfeedfeed)" in info
        )
        assert "numeric: OMP_NUM_THREADS=1" in info and "in: venv venv-1a2b" in info

    drive(app, steps)


def test_the_run_screen_follows_points_evaluation_and_the_log_as_they_arrive(seeded):
    app = make_app(seeded)
    reg = seeded.registry

    async def steps(pilot):
        app.open_run("dddd00000004")
        await pilot.pause()
        screen = app.screen
        assert screen.metric == "loss"
        assert "loss = 0.03125" in screen.query_one(Chart).title
        log = screen.query_one(Log)
        assert list(log.lines) == [
            "epoch 1 [bold]not markup[/bold]",
            "bell \\x07 and \\e[31mred\\e[0m",
            "epoch 2",
        ]
        insert_points(reg, "dddd00000004", [(900, "loss", 30, 0.0001, 0.0)])
        set_eval_metrics(reg, "dddd00000004", {"accuracy": 0.5})
        with open(seeded.project.root / "dddd00000004.log", "a") as handle:
            handle.write("epoch 3\npartial")
        await refresh(pilot)
        assert "loss = 0.0001" in screen.query_one(Chart).title
        assert "accuracy: 0.5" in _text(screen.query_one("#info-text", Static))
        assert list(log.lines)[-1] == "epoch 3"  # the unfinished line waits for its end
        await pilot.press("n")
        assert screen.metric == "accuracy"
        assert list(screen.curves.curves) == ["accuracy"]  # only the shown metric's points read
        assert screen.curves.curves["accuracy"].count == 30
        assert "accuracy = 0.99  (2/2, n: next)" in screen.query_one(Chart).title
        await pilot.press("f")
        assert log.auto_scroll is False
        await pilot.press("f")
        assert log.auto_scroll is True
        await pilot.press("y")
        assert app.clipboard == "dddd00000004"
        await pilot.press("x")
        assert isinstance(app.screen, Confirm)
        await pilot.press("escape")
        assert app.screen is screen

    drive(app, steps)


def test_compare_shows_differences_best_values_and_overlaid_curves(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        app.open_compare(["aaaa", "bbbb"])  # prefixes, as on the command line
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.run_ids == ["aaaa00000001", "bbbb00000002"]
        rows = {r[0].strip(): r[1:] for r in cells(screen.query_one(DataTable))}
        assert rows["note"] == ["[b]bold?[/b]", "plain"]
        assert rows["learning_rate"] == ["0.1", "0.01"]
        assert rows["loss"] == ["0.0333333", "0.0322581 ★"]  # lower is better for a loss
        assert rows["f1"] == ["-", "0.91 ★"]  # evaluation: only bbbb was evaluated
        assert {"params", "metrics", "eval metrics"} <= set(rows)  # the sections
        chart = screen.query_one(Chart)
        assert [s.label for s in chart.series] == ["aaaa00000001", "bbbb00000002"]
        await pilot.press("n")
        assert screen.metric == "accuracy"
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)

    drive(app, steps)


def test_the_queue_pane_lists_active_runs_and_agents_and_checks_them(seeded):
    # An agent whose port refuses connections: the check reports it unreachable (real SSH client).
    (seeded.project.root / "mllib.toml").write_text(
        'name = "seeded"\n[[agents]]\nname = "gpu1"\nhost = "127.0.0.1"\nport = 1\ngpus = 2\n'
    )
    app = make_app(Workspace.find(seeded.project.root))

    async def steps(pilot):
        await pilot.press("2")
        assert app.active_pane == "queue"
        queue = cells(app.query_one("#queue-table", DataTable))
        assert [(r[0], r[2], r[4]) for r in queue] == [
            ("ana", "eeee00000005", "queued"),
            ("bo", "dddd00000004", "running"),
        ]
        agents = cells(app.query_one("#agents", DataTable))
        assert agents[0][:4] == ["gpu1", "127.0.0.1:1", "2", "0/?"]
        assert agents[0][5] == "not checked"
        await pilot.press("k")
        await app.workers.wait_for_complete()
        await pilot.pause()
        agents = cells(app.query_one("#agents", DataTable))
        assert agents[0][5].startswith("no: ")
        await pilot.press("enter")  # the queue's first run
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == "eeee00000005"

    drive(app, steps)


def test_the_deployments_pane_shows_each_environment_and_the_rules(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        rows = cells(app.query_one("#deployments-table", DataTable))
        assert [(r[0], r[1]) for r in rows] == [("staging", "none"), ("prod", "none")]
        assert "prod deploy budget 3.0/3" in _text(app.query_one("#rules", Static))
        # stop and rollback go through `mllib deploy`'s functions: with nothing deployed, they
        # say so as the CLI does, after asking
        await pilot.press("s")
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("down", "b", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("Nothing is running on staging" in m for m in messages)
        assert any("Nothing is live on prod" in m for m in messages)

    drive(app, steps)


def test_the_command_palette_reaches_panes_and_run_actions(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("ctrl+p")
        await pilot.press(*"Deployments")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.active_pane == "deployments"
        await pilot.press("1")
        await pilot.press("ctrl+p", *"Copy run id")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.clipboard == "eeee00000005"
        await pilot.press("q")

    drive(app, steps)
    assert app.return_code == 0


def test_the_deployments_pane_shows_a_canary_split_and_the_replicas(seeded, monkeypatch):
    # A row as `mllib deploy status --json` gives it during a canary (README: Canary, A/B and
    # shadow); tests/serving/test_rollouts.py checks that JSON against live servers. Here: what
    # the pane makes of it.
    from mllib.dashboard.data.deployments import Deployments

    row = {
        "env": "prod", "state": "live", "model": "iris", "version": 3, "url": "http://x",
        "stats": {"rps": 12.0, "p50_ms": 3.0, "p99_ms": 9.0, "error_rate": 0.0},
        "replicas": [
            {"id": "r1", "variant": "stable", "state": "ready"},
            {"id": "r2", "variant": "stable", "state": "ready"},
            {"id": "r3", "variant": "canary", "state": "loading"},
        ],
        "variants": [
            {"name": "stable", "model": "iris", "version": 3, "weight": 90.0, "replicas": 2},
            {"name": "canary", "model": "iris", "version": 4, "weight": 10.0, "replicas": 0,
             "mode": "canary"},
        ],
    }  # fmt: skip
    monkeypatch.setattr(Deployments, "status", lambda self, window_s=1.0: [row])
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        (cells_,) = cells(app.query_one("#deployments-table", DataTable))
        assert cells_[3] == "90% v3 · 10% v4 canary"
        assert cells_[4] == "2/3"  # ready of all, the canary's still loading

    drive(app, steps)
