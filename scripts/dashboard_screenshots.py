"""Write the README's dashboard screenshots (docs/*.svg) with Textual's own screenshot export,
over the test suite's seeded registry and fixed clock, so they show the dashboard as it is.

Run after a change of layout: `.venv/bin/python scripts/dashboard_screenshots.py`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.dashboard.seed: the suite's seeded registry

from tests.dashboard.conftest import make_app  # noqa: E402
from tests.dashboard.seed import seed  # noqa: E402

SIZE = (110, 32)
SHOTS = {"dashboard-runs.svg": [], "dashboard-run.svg": ["down", "enter"]}


async def shoot(ws, keys: list[str]) -> str:
    app = make_app(ws, metric="loss")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*keys)
        await app.workers.wait_for_complete()
        await pilot.pause()
        return app.export_screenshot()


def main() -> None:
    os.environ.pop("MLLIB_SERVER", None)
    os.environ.pop("NO_COLOR", None)
    os.environ["TZ"] = "UTC"
    time.tzset()
    with tempfile.TemporaryDirectory() as tmp:
        ws = seed(Path(tmp) / "seeded")
        for name, keys in SHOTS.items():
            (ROOT / "docs" / name).write_text(asyncio.run(shoot(ws, keys)))
            print(f"wrote docs/{name}")


if __name__ == "__main__":
    main()
