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


def cells(table) -> list[list[str]]:
    """A DataTable's rows as plain text, top to bottom."""
    return [
        [getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)
    ]
