"""Studies as plain data for `tune show/list` and their --json forms (keys in the README)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mllib.registry.runs import RunRecord
from mllib.tuning.records import StudyRecord, list_studies, trial_runs
from mllib.tuning.remote import RUN_ATTR, find_study, server_studies, shared_record
from mllib.tuning.storage import import_optuna, open_study, quiet_warnings
from mllib.workspace import Workspace

if TYPE_CHECKING:
    import optuna

# Optuna's trial states as mllib shows them.
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "waiting"}  # fmt: skip


def trials(ws: Workspace, study: StudyRecord, optuna_study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial: number, state, value, params, its run and how that ended."""
    links = trial_runs(ws.registry, study.name)
    rows = []
    for frozen in optuna_study.get_trials(deepcopy=False):
        link = links.get(frozen.number, {})
        started, ended = link.get("started_at"), link.get("ended_at")
        duration = None
        if started:
            duration = RunRecord("", "", "", "", "", started_at=started, ended_at=ended).duration_s
        state = STATES.get(frozen.state.name, frozen.state.name.lower())
        error = frozen.user_attrs.get("error") or (
            link.get("error") if state != "complete" else None
        )
        rows.append(
            {
                "number": frozen.number,
                "state": state,
                "value": frozen.value,
                "params": dict(frozen.params),
                "run_id": link.get("run_id") or frozen.user_attrs.get(RUN_ATTR),
                "run_status": link.get("status"),
                "failure_class": link.get("failure_class"),
                "error": error,
                "retry_of": frozen.user_attrs.get("retry_of"),
                "retried": bool(frozen.user_attrs.get("retried")),
                "last_step": max(frozen.intermediate_values, default=None),
                "duration_s": round(duration, 3) if duration is not None else None,
            }
        )
    return rows


def best_trial(ws: Workspace, study: StudyRecord) -> dict[str, Any] | None:
    """The complete trial with the best value (None when no trial completed)."""
    return _best(trials(ws, study, open_study(ws, study, create=False)), study.direction)


def _best(rows: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    done = [r for r in done if not math.isnan(r["value"])]
    if not done:
        return None
    pick = min if direction == "minimize" else max
    return pick(done, key=lambda r: r["value"])


def study_dict(ws: Workspace, name: str, *, detail: bool = True) -> dict[str, Any]:
    """The JSON object of one study; `detail` adds its trials and parameter importances."""
    study = find_study(ws, name)
    optuna_study = open_study(ws, study, create=False)
    study = shared_record(optuna_study, study)
    rows = trials(ws, study, optuna_study)
    best = _best(rows, study.direction)
    counts = {state: 0 for state in STATES.values()}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    data: dict[str, Any] = {
        "name": study.name,
        "model": study.model,
        "model_file": study.model_ref,
        "metric": study.metric,
        "metric_source": study.metric_source,
        "direction": study.direction,
        "status": study.status,
        "error": study.error,
        "best_value": best["value"] if best else None,
        "best_params": {**study.fixed, **best["params"]} if best else None,
        "best_trial": best["number"] if best else None,
        "best_run_id": best["run_id"] if best else None,
        "counts": counts,
        "trials_target": study.settings.get("trials"),
        "created_at": study.created_at,
        "updated_at": study.updated_at,
    }
    if detail:
        data |= {
            "space": study.space,
            "fixed_params": study.fixed,
            "settings": study.settings,
            "launch": study.launch,
            "user": study.user,
            "importances": importances(optuna_study),
            "trials": rows,
        }
    return data


def list_dicts(ws: Workspace) -> list[dict[str, Any]]:
    """Every study, newest first, without trials: this project's, and those its user keeps on
    the team server that were started on another machine."""
    studies = sorted(
        [*list_studies(ws.registry), *server_studies(ws)],
        key=lambda s: s.created_at,
        reverse=True,
    )
    return [study_dict(ws, s.name, detail=False) for s in studies]


def importances(optuna_study: optuna.Study) -> dict[str, float]:
    """Each param's importance (Optuna's default evaluator, PED-ANOVA), normalised to sum to 1;
    {} until two trials completed with different params."""
    optuna = import_optuna()
    complete = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2 or len({repr(t.params) for t in complete}) < 2:
        return {}
    try:
        with quiet_warnings():
            found = optuna.importance.get_param_importances(optuna_study)
    except (RuntimeError, ValueError, ZeroDivisionError):  # too few distinct values to tell
        return {}
    return {name: round(float(v), 4) for name, v in found.items()}
