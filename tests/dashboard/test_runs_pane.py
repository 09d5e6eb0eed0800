"""The Runs pane: the live table, filters, deltas, marking, the metric picker, copy and cancel."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from mllib.dashboard.compare import CompareScreen
from mllib.dashboard.detail import RunScreen
from mllib.dashboard.dialogs import Confirm, Pick
from mllib.registry.metrics import insert_points
from mllib.registry.runs import RunRecord, create_run, get_run, update_run
from tests.dashboard.conftest import cells, drive, make_app, refresh


def _ids(app) -> list[str]:
    return [row[0].strip("● ") for row in cells(app.runs.table)]


def test_runs_are_listed_newest_first_with_status_where_and_the_metric(seeded):
    app = make_app(seeded, metric="loss")

    async def steps(pilot):
        rows = cells(app.runs.table)
        assert _ids(app) == [
            "eeee00000005", "dddd00000004", "cccc00000003", "bbbb00000002", "aaaa00000001"
        ]  # fmt: skip
        running = rows[1]
        assert running[1:6] == ["classifier", "train", "running", "process", "bo"]
        assert running[6] == "40m00s"  # started 12:20, the clock says 13:00
        assert running[7] == "0.03125"  # loss's newest value: 1 / (29 + 1 + 2)
        assert len(running[8].strip()) > 0  # its sparkline
        assert rows[2][3] == "failed (user_error)"
        assert rows[0][6] == "-"  # queued: not started
        status = str(app.runs.query_one("#runs-status").render())
        assert "5 of 5 runs" in status and "metric: loss" in status

    drive(app, steps)


def test_the_filter_bar_narrows_by_status_model_user_and_text(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press("escape")  # back to the table without a change
        for text, expected in [
            ("status:running", ["dddd00000004"]),
            ("model:regressor", ["eeee00000005", "cccc00000003"]),
            ("user:ana model:classifier", ["bbbb00000002", "aaaa00000001"]),
            ("bbbb", ["bbbb00000002"]),
            ("", ["eeee00000005", "dddd00000004", "cccc00000003", "bbbb00000002", "aaaa00000001"]),
        ]:
            app.runs.query_one("#filter", Input).value = text
            await pilot.press("slash", "enter")
            assert _ids(app) == expected, text
        app.runs.query_one("#filter", Input).value = "status:sleeping"
        await pilot.press("slash", "enter")
        await pilot.pause()
        assert any("Unknown status 'sleeping'" in n.message for n in app._notifications)

    drive(app, steps)


def test_new_runs_points_and_status_changes_arrive_with_the_next_refresh(seeded):
    app = make_app(seeded, metric="loss")
    reg = seeded.registry

    async def steps(pilot):
        create_run(
            reg,
            RunRecord("ffff00000006", "[i]fresh[/i]", "train", "queued", "2026-03-01T12:59:00Z"),
            {},
            {},
        )
        insert_points(reg, "dddd00000004", [(500, "loss", 100, 0.001, 0.0)])
        update_run(reg, "aaaa00000001", status="cancelled")
        await refresh(pilot)
        rows = cells(app.runs.table)
        assert rows[0][0].strip() == "ffff00000006"
        assert rows[0][1] == "[i]fresh[/i]"  # a model name with markup shows as written
        assert rows[2][7] == "0.001"
        assert rows[-1][3] == "cancelled"
        assert "6 of 6 runs" in str(app.runs.query_one("#runs-status").render())

    drive(app, steps)


def test_a_run_that_stops_matching_the_filter_leaves_the_table(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        app.runs.query_one("#filter", Input).value = "status:running"
        await pilot.press("slash", "enter")
        assert _ids(app) == ["dddd00000004"]
        update_run(seeded.registry, "dddd00000004", status="succeeded")
        await refresh(pilot)
        assert _ids(app) == []

    drive(app, steps)


def test_the_window_holds_the_newest_limit_runs(seeded):
    app = make_app(seeded, limit=3)

    async def steps(pilot):
        assert _ids(app) == ["eeee00000005", "dddd00000004", "cccc00000003"]
        create_run(
            seeded.registry,
            RunRecord("ffff00000006", "m", "train", "queued", "2026-03-01T12:59:00Z"),
            {},
            {},
        )
        await refresh(pilot)
        assert _ids(app) == ["ffff00000006", "eeee00000005", "dddd00000004"]
        assert "3 of 6 runs" in str(app.runs.query_one("#runs-status").render())

    drive(app, steps)


def test_the_metric_picker_changes_the_column(seeded):
    app = make_app(seeded, metric="loss")

    async def steps(pilot):
        await pilot.press("m")
        assert isinstance(app.screen, Pick)
        await pilot.press("down", "enter")  # loss -> accuracy
        assert app.runs.metric == "accuracy"
        table = app.runs.query_one(DataTable)
        assert table.columns["value"].label.plain == "ACCURACY"
        assert cells(table)[1][7] == "0.99"  # dddd: 0.5 + 29/100 + 2/10

    drive(app, steps)


def test_enter_opens_the_run_and_escape_comes_back(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("down", "enter")
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == "dddd00000004"
        await pilot.press("escape")
        assert not isinstance(app.screen, RunScreen)

    drive(app, steps)


def test_marked_runs_open_side_by_side(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("c")  # nothing marked: says how
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("down", "down", "down", "space", "down", "space")
        assert app.runs.marked == ["bbbb00000002", "aaaa00000001"]
        assert cells(app.runs.table)[3][0].startswith("●")
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == ["bbbb00000002", "aaaa00000001"]

    drive(app, steps)


def test_copy_puts_the_run_id_on_the_clipboard(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("down", "y")
        assert app.clipboard == "dddd00000004"

    drive(app, steps)


def test_cancel_asks_first_and_then_cancels_as_runs_cancel_does(seeded):
    app = make_app(seeded)

    async def steps(pilot):
        await pilot.press("down", "x")
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")  # no: nothing happens
        assert get_run(seeded.registry, "dddd00000004").status == "running"
        await pilot.press("x")
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert get_run(seeded.registry, "dddd00000004").status == "cancelled"
        await refresh(pilot)
        assert cells(app.runs.table)[1][3] == "cancelled"
        assert any("dddd00000004 cancelled" in n.message for n in app._notifications)

    drive(app, steps)


def test_changes_made_while_a_run_is_open_show_on_return(seeded):
    app = make_app(seeded, metric="loss")

    async def steps(pilot):
        await pilot.press("down", "enter")
        assert isinstance(app.screen, RunScreen)
        create_run(
            seeded.registry,
            RunRecord("ffff00000006", "m", "train", "queued", "2026-03-01T12:59:00Z"),
            {},
            {},
        )
        update_run(seeded.registry, "aaaa00000001", status="cancelled")
        await refresh(pilot)
        await pilot.press("escape")
        await refresh(pilot)
        rows = cells(app.runs.table)
        assert rows[0][0].strip() == "ffff00000006" and rows[-1][3] == "cancelled"

    drive(app, steps)
