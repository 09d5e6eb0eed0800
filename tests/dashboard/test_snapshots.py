"""The dashboard's layouts as SVG snapshots (pytest-textual-snapshot): at 80x24 and at a large
size, in colour and with NO_COLOR, over the seed's fixed registry and clock.

After an intended change of layout: `pytest tests/dashboard/test_snapshots.py --snapshot-update`,
then look at the new SVGs under tests/dashboard/__snapshots__/ before committing them.
"""

from __future__ import annotations

import pytest

from mllib.workspace import Workspace
from tests.dashboard.conftest import make_app

SMALL, LARGE = (80, 24), (160, 48)


@pytest.fixture(params=["color", "no_color"])
def colour(request, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "color":
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", "1")
    return request.param


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_runs_pane(snap_compare, seeded, colour, size):
    assert snap_compare(make_app(seeded, metric="loss"), terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_run_screen(snap_compare, seeded, colour, size):
    app = make_app(seeded, metric="loss")
    assert snap_compare(app, press=["down", "enter"], terminal_size=size, run_before=_settle)


def test_compare_screen(snap_compare, seeded, colour):
    app = make_app(seeded, metric="loss")

    async def marked(pilot) -> None:
        await pilot.press("down", "down", "down", "space", "down", "space", "c")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=(120, 36), run_before=marked)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_queue_pane(snap_compare, seeded, colour, size):
    app = make_app(seeded, metric="loss")
    assert snap_compare(app, press=["2"], terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_deployments_pane(snap_compare, seeded, colour, size):
    app = make_app(seeded, metric="loss")

    async def shown(pilot) -> None:
        await pilot.press("3")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=shown)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_tuning_pane(snap_compare, seeded, colour, size):
    app = make_app(seeded, metric="loss")

    async def shown(pilot) -> None:
        await pilot.press("4")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=shown)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_tuning_pane_with_a_study(snap_compare, tuned, colour, size):
    """Study `quad`'s 4 real trials (tests/dashboard/conftest.py `tuned`) with the best so far."""
    app = make_app(Workspace.find(tuned))

    async def shown(pilot) -> None:
        await pilot.press("4")
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=shown)


def test_cancel_confirmation(snap_compare, seeded, colour):
    app = make_app(seeded, metric="loss")
    assert snap_compare(app, press=["down", "x"], terminal_size=SMALL, run_before=_settle)
