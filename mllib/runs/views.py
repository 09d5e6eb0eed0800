"""Runs as plain data for `runs show/list/compare` and their --json forms (the documented schema)."""

from __future__ import annotations

import math
from typing import Any

from mllib.datasets.catalog import run_links
from mllib.errors import UsageError
from mllib.ranges import COUNT
from mllib.registry.artifacts import list_artifacts, model_version_of
from mllib.registry.metrics import get_eval_metrics, metric_summary
from mllib.registry.runs import ACTIVE, TERMINAL, RunRecord, get_params, get_run, list_runs
from mllib.workspace import Workspace

STATUSES = (*ACTIVE, *TERMINAL)
# Metrics whose names contain one of these are better when lower; all others when higher.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "latency", "time")


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def run_dict(ws: Workspace, run: RunRecord, *, detail: bool = True) -> dict[str, Any]:
    """The JSON object of one run (keys documented in the README)."""
    reg = ws.registry
    data: dict[str, Any] = {
        "id": run.id,
        "model": run.model,
        "action": run.action,
        "status": run.status,
        "failure_class": run.failure_class,
        "error": run.error,
        "params": get_params(reg, run.id),
        "eval_metrics": get_eval_metrics(reg, run.id),
        "runtime": run.runtime,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": round(run.duration_s, 3) if run.duration_s is not None else None,
    }
    if detail:
        summary = metric_summary(reg, run.id)
        version = model_version_of(reg, run.id)
        data |= {
            "metrics": {name: s["last"] for name, s in summary.items()},
            "metric_summary": summary,
            "artifacts": list_artifacts(reg, run.id),
            "datasets": run_links(reg, run.id),
            "model_version": version["version"] if version else None,
            "runtime_note": run.runtime_note,
            "code_hash": run.code_hash,
            "seed": run.seed,
            "source_run_id": run.source_run_id,
            "rerun_of": run.rerun_of,
            "phase": run.phase,
            "log_path": run.log_path,
            "model_file": run.model_file,
            "user": run.user,
            "host": run.host,
            "attempts": _attempts(ws, run),
        }
    return data


def _attempts(ws: Workspace, run: RunRecord) -> list[dict[str, Any]]:
    """A remote run's attempts (agent, status, reason); [] for a local run."""
    from mllib.agents import REMOTE_RUNTIME

    if run.runtime != REMOTE_RUNTIME:
        return []
    from mllib.agents.retry import attempts

    keys = ("attempt", "agent", "status", "failure_class", "reason", "started_at", "ended_at")
    return [{k: a[k] for k in keys} for a in attempts(ws.registry, run.id)]


def show(ws: Workspace, run_id: str) -> dict[str, Any]:
    return run_dict(ws, get_run(ws.registry, run_id))


def list_dicts(
    ws: Workspace, *, status: str | None = None, limit: int | None = 20
) -> list[dict[str, Any]]:
    """Runs newest first (`status`: only those; `limit`: at most that many, None for all)."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"Unknown status {status!r}", hint=f"Use one of: {', '.join(STATUSES)}.")
    if limit is not None:
        COUNT.check(limit, "--limit")
    return [
        run_dict(ws, r, detail=False) for r in list_runs(ws.registry, status=status, limit=limit)
    ]


def compare(ws: Workspace, run_ids: list[str]) -> dict[str, Any]:
    """Params and metrics of several runs side by side, with the keys that differ and the best runs."""
    runs = [show(ws, rid) for rid in run_ids]
    params = _union(r["params"] for r in runs)
    metrics = _union(r["metrics"] for r in runs)
    evals = _union(r["eval_metrics"] for r in runs)
    return {
        "runs": [r["id"] for r in runs],
        "params": {p: {r["id"]: r["params"].get(p) for r in runs} for p in params},
        "metrics": {m: {r["id"]: r["metrics"].get(m) for r in runs} for m in metrics},
        "eval_metrics": {m: {r["id"]: r["eval_metrics"].get(m) for r in runs} for m in evals},
        "differs": {
            "params": [p for p in params if len({repr(r["params"].get(p)) for r in runs}) > 1],
            "metrics": [m for m in metrics if len({repr(r["metrics"].get(m)) for r in runs}) > 1],
            "eval_metrics": [
                m for m in evals if len({repr(r["eval_metrics"].get(m)) for r in runs}) > 1
            ],
        },
        # Per section: a training metric and an evaluation metric may share a name ("loss").
        "best": {
            "metrics": {m: _best({r["id"]: r["metrics"].get(m) for r in runs}, m) for m in metrics},
            "eval_metrics": {
                m: _best({r["id"]: r["eval_metrics"].get(m) for r in runs}, m) for m in evals
            },
        },
    }


def _union(dicts) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _best(values: dict[str, float | None], metric: str) -> str | None:
    present = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if not present:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(present, key=present.__getitem__)
