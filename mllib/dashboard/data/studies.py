"""The tuning pane's data: studies with their trials and the best value so far (`mllib tune list`
and `tune show`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mllib.workspace import Workspace


@dataclass
class StudyRow:
    """One tuning study (`mllib tune list`): its trials by state and the best value so far."""

    name: str
    model: str
    status: str
    metric: str
    direction: str
    counts: dict[str, int]
    trials_target: int | None
    best_value: float | None
    best_run_id: str | None
    updated_at: str | None

    @property
    def trials(self) -> int:
        return sum(self.counts.values())


def studies(ws: Workspace) -> list[StudyRow]:
    """Every study, newest first, as `mllib tune list --json` gives it."""
    from mllib.tuning.views import list_dicts

    keys = ("name", "model", "status", "metric", "direction", "counts", "trials_target",
            "best_value", "best_run_id", "updated_at")  # fmt: skip
    return [StudyRow(**{k: d[k] for k in keys}) for d in list_dicts(ws)]


@dataclass
class TrialRow:
    """One trial of a study (`mllib tune show`): its state, value and params, its run, and the
    best value of the trials up to it (how the search has been converging)."""

    number: int
    state: str
    value: float | None
    best: float | None
    params: dict[str, Any]
    run_id: str | None


def trials(ws: Workspace, name: str) -> list[TrialRow]:
    """Study `name`'s trials in order, each with the best complete value up to it: this
    project's study, or one its user keeps on the team server (as `mllib tune show` finds it)."""
    from mllib.tuning.remote import find_study
    from mllib.tuning.storage import open_study
    from mllib.tuning.views import trials as study_trials

    study = find_study(ws, name)
    pick = min if study.direction == "minimize" else max
    best: float | None = None
    rows = []
    optuna_study = open_study(ws, study, create=False)
    for t in sorted(study_trials(ws, study, optuna_study), key=lambda t: t["number"]):
        value = t["value"]
        if t["state"] == "complete" and value is not None and not math.isnan(value):
            best = value if best is None else pick(best, value)
        rows.append(TrialRow(t["number"], t["state"], value, best, t["params"], t["run_id"]))
    return rows
