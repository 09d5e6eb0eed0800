"""A study's optimization history: each complete trial's value and the best so far, by trial
number, drawn as `runs plot` draws curves (plotext in the terminal, or a PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.errors import NotFoundError
from mllib.runs.plot import draw


def history(data: dict[str, Any], *, output: Path | None = None, width: int | None = None) -> str:
    """Draw the history of a study (`views.study_dict`); an error when no trial completed."""
    done = [t for t in data["trials"] if t["state"] == "complete" and t["value"] is not None]
    if not done:
        raise NotFoundError(f"Study {data['name']} has no complete trial to plot yet")
    pick = min if data["direction"] == "minimize" else max
    best: list[tuple[int, float | None]] = []
    for trial in done:
        value = trial["value"] if not best else pick(best[-1][1], trial["value"])
        best.append((trial["number"], value))
    series = {"trial": [(t["number"], t["value"]) for t in done], "best so far": best}
    return draw(series, data["metric"], "trial", output=output, width=width)
