"""The dashboard driven by Textual's Pilot over a real registry (tests/dashboard/seed.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mllib.dashboard.app import DashboardApp
from mllib.dashboard.data import DashboardData
from tests.dashboard.seed import NOW, seed


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Times show in UTC, so layouts do not depend on the machine's zone; the queue is the local
    one unless a test logs in to a team server."""
    monkeypatch.delenv("MLLIB_SERVER", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def seeded(tmp_path: Path):
    """A project (folder `seeded`) with the seed's runs in its registry."""
    return seed(tmp_path / "seeded")


STUDY_TIME = "2026-03-01T12:58:00.000000Z"  # two minutes before the seed's NOW


@pytest.fixture
def team_server(tmp_path: Path):
    """A running team server (SQLite) with users ana (admin) and bo, and one agent, `far`
    (2 GPUs), that does not answer, so what is submitted stays queued."""
    from tests.server.conftest import with_a_silent_agent

    server, address = with_a_silent_agent(tmp_path)
    server.far = address  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project (folder `tuned`) with study `quad`: 4 trials of tests/tuning's model, each a
    real run (process runtime) made by `mllib.tune` with the random sampler seeded, so its params
    and values are the same every time. Only the run ids and the study's times are fixed by hand
    (`trial0000001`..., STUDY_TIME), so snapshots of it do not change."""
    import itertools

    import mllib
    from tests.tuning.test_tune import MODEL

    root = tmp_path_factory.mktemp("tuning") / "tuned"
    root.mkdir()
    (root / "model.py").write_text(MODEL)
    (root / "mllib.toml").write_text('[runtime]\nlocal = "process"\n')
    ids = (f"trial{n:07d}" for n in itertools.count(1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLLIB_HOME", str(root.parent / "mllib-home"))
        patch.chdir(root)
        patch.setattr("mllib.runs.prepare.new_run_id", lambda: next(ids))
        patch.setattr("mllib.tuning.records.now", lambda: STUDY_TIME)
        study = mllib.tune(
            "model.py", {"x": "uniform:-4:4"}, metric="val_loss", trials=4, parallel=1,
            sampler="random", seed=7, params={"steps": 1}, name="quad",
        )  # fmt: skip
    assert len(study.trials) == 4
    return root


def make_app(ws, *, now: float = NOW, **kwargs) -> DashboardApp:
    """The dashboard of `ws` at a fixed time (the seed's, unless `now`); refreshes come from the
    test (a long interval), and made-up running runs are not settled as dead."""
    data = DashboardData(ws, reconcile_every_s=None)
    kwargs.setdefault("refresh_s", 3600)
    return DashboardApp(data, clock=lambda: now, **kwargs)


def drive(
    app: DashboardApp, steps: Callable[..., Awaitable[None]], size: tuple[int, int] = (120, 36)
) -> None:
    """Run the app headless at `size` and play `steps(pilot)` against it."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await steps(pilot)

    asyncio.run(main())


async def refresh(pilot) -> None:
    """One refresh, as the timer would do it, then let the screen catch up."""
    pilot.app.refresh_data()
    await pilot.pause()


async def until(pilot, ready: Callable[[], object], what: str, tries: int = 300):
    """Refresh as the timer does (reading in the background from a team server), each read let
    finish, until `ready()` is truthy; its value."""
    for _ in range(tries):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(0.05)
        if found := ready():
            return found
        pilot.app.refresh_data()
    raise AssertionError(f"timed out waiting for {what}")


def cells(table) -> list[list[str]]:
    """A DataTable's rows as plain text, top to bottom."""
    return [
        [getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)
    ]
