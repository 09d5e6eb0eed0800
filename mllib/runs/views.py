"""Runs as plain data for `runs show/list/compare` and their --json forms (the documented schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mllib.datasets.catalog import run_links
from mllib.errors import UsageError
from mllib.metric_values import best_of
from mllib.ranges import COUNT
from mllib.registry.artifacts import list_artifacts, model_version_of
from mllib.registry.environments import get_environment
from mllib.registry.evaluations import Evaluation, latest_evaluations
from mllib.registry.metrics import get_eval_metrics, metric_summary
from mllib.registry.runs import ACTIVE, TERMINAL, RunRecord, get_params, get_run, list_runs
from mllib.runs.backend import backend_for
from mllib.workspace import Workspace

STATUSES = (*ACTIVE, *TERMINAL)


def run_dict(
    ws: Workspace,
    run: RunRecord,
    *,
    detail: bool = True,
    evaluations: Mapping[str, Evaluation] | None = None,
) -> dict[str, Any]:
    """The JSON object of one run (keys documented in the README); `evaluations` holds the
    latest evaluation of training runs, when a listing has read them all at once."""
    reg = ws.registry
    if evaluations is None:
        evaluations = latest_evaluations(reg, [run.id])
    evaluation = evaluations.get(run.id) if run.action.startswith("train") else None
    data: dict[str, Any] = {
        "id": run.id,
        "model": run.model,
        "action": run.action,
        "status": run.status,
        "failure_class": run.failure_class,
        "error": run.error,
        "params": get_params(reg, run.id),
        "eval_metrics": get_eval_metrics(reg, run.id),
        "evaluation": evaluation.as_dict() if evaluation else None,
        "evaluations": evaluation.count if evaluation else 0,
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
            "attempts": backend_for(run).attempts(ws, run),
            "environment": get_environment(reg, run.id),
            "submitted_python": _submitted_python(ws, run),
        }
    return data


def _submitted_python(ws: Workspace, run: RunRecord) -> str | None:
    """The Python version of the machine that submitted the run (its spec), when recorded."""
    try:
        spec = ws.run_folder(run).spec_or_none()
    except (OSError, ValueError, TypeError):
        return None
    return spec.python if spec is not None else None


def outcome(ws: Workspace, run: RunRecord) -> dict[str, Any]:
    """What a finished run left: its last metric values, evaluation and model version (the part
    of `show` a run's summary line needs), for a record already at hand."""
    version = model_version_of(ws.registry, run.id)
    return {
        "metrics": {name: s["last"] for name, s in metric_summary(ws.registry, run.id).items()},
        "eval_metrics": get_eval_metrics(ws.registry, run.id),
        "model_version": version["version"] if version else None,
    }


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
    runs = list_runs(ws.registry, status=status, limit=limit)
    evaluations = latest_evaluations(ws.registry, [r.id for r in runs])
    return [run_dict(ws, r, detail=False, evaluations=evaluations) for r in runs]


def compare(ws: Workspace, run_ids: list[str]) -> dict[str, Any]:
    """Params and metrics of several runs side by side, with the keys that differ and the best runs."""
    runs = [show(ws, rid) for rid in run_ids]
    # A training run is compared on its latest evaluation, an evaluate run on its own.
    for r in runs:
        r["compared_eval"] = (r["evaluation"] or {}).get("eval_metrics", r["eval_metrics"])
    params = _union(r["params"] for r in runs)
    metrics = _union(r["metrics"] for r in runs)
    evals = _union(r["compared_eval"] for r in runs)
    return {
        "runs": [r["id"] for r in runs],
        "params": {p: {r["id"]: r["params"].get(p) for r in runs} for p in params},
        "metrics": {m: {r["id"]: r["metrics"].get(m) for r in runs} for m in metrics},
        "eval_metrics": {m: {r["id"]: r["compared_eval"].get(m) for r in runs} for m in evals},
        "evaluated_by": {
            r["id"]: (r["evaluation"] or {}).get("run_id")
            or (r["id"] if r["eval_metrics"] else None)
            for r in runs
        },
        "evaluations": {r["id"]: r["evaluations"] for r in runs},
        "differs": {
            "params": [p for p in params if len({repr(r["params"].get(p)) for r in runs}) > 1],
            "metrics": [m for m in metrics if len({repr(r["metrics"].get(m)) for r in runs}) > 1],
            "eval_metrics": [
                m for m in evals if len({repr(r["compared_eval"].get(m)) for r in runs}) > 1
            ],
        },
        "environment": compare_environments({r["id"]: r["environment"] for r in runs}),
        # Per section: a training metric and an evaluation metric may share a name ("loss").
        "best": {
            "metrics": {
                m: best_of({r["id"]: r["metrics"].get(m) for r in runs}, m) for m in metrics
            },
            "eval_metrics": {
                m: best_of({r["id"]: r["compared_eval"].get(m) for r in runs}, m) for m in evals
            },
        },
    }


def compare_environments(envs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Where runs' environments differ: `values` (key -> run id -> value, for Python, platform,
    CPU, GPUs, runtime, the package set's hash and each numeric variable), `packages` (the
    packages whose versions differ: name -> run id -> version), `differs` (the keys of `values`
    that differ) and `warnings` (what may change results: Python, key packages, numeric
    variables). Runs with no recorded environment are left out of the comparison."""
    known = {run_id: env for run_id, env in envs.items() if env and "python" in env}
    values: dict[str, dict[str, Any]] = {}
    for key in ENV_KEYS:
        values[key] = {run_id: _env_value(env, key) for run_id, env in known.items()}
    numeric = _union((env.get("numeric_env") or {}) for env in known.values())
    for name in sorted(numeric):
        values[name] = {r: (e.get("numeric_env") or {}).get(name) for r, e in known.items()}
    names = _union((env.get("packages") or {}) for env in known.values())
    packages = {
        name: {r: (e.get("packages") or {}).get(name) for r, e in known.items()}
        for name in sorted(names)
    }
    packages = {name: v for name, v in packages.items() if len(set(v.values())) > 1}
    differs = [key for key, v in values.items() if len({repr(x) for x in v.values()}) > 1]
    warnings = []
    if "python" in differs:
        shown = ", ".join(sorted({str(v) for v in values["python"].values()}))
        warnings.append(
            f"the runs ran on different Pythons ({shown}): results and pickled models may differ"
        )
    for name in (n for n, v in packages.items() if n in KEY_PACKAGES and all(v.values())):
        shown = ", ".join(f"{v or 'absent'} ({r})" for r, v in packages[name].items())
        warnings.append(f"{name} differs: {shown}")
    changed = [key for key in differs if key in numeric]
    if changed:
        warnings.append(
            f"BLAS/threading variables differ ({', '.join(changed)}): results may differ in "
            "their last bits"
        )
    return {"values": values, "packages": packages, "differs": differs, "warnings": warnings}


# The environment keys `compare` lines up, and the packages whose versions change results.
ENV_KEYS = ("python", "implementation", "platform", "cpu", "gpus", "runtime", "runtime_id",
            "packages_hash")  # fmt: skip
KEY_PACKAGES = {
    "numpy", "scipy", "scikit-learn", "torch", "pandas", "tensorflow", "jax", "jaxlib",
    "xgboost", "lightgbm", "catboost", "transformers", "cloudpickle",
}  # fmt: skip


def _env_value(env: dict[str, Any], key: str) -> Any:
    if key == "gpus":
        return ", ".join(
            f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus") or []
        )
    return env.get(key)


def _union(dicts) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def environment_lines(env: dict | None, submitted: str | None) -> list[tuple[str, str]]:
    """The summary of a run's environment `runs show` prints (everything is in --json)."""
    if not env or "python" not in env:
        return []
    python = f"{env['python']} ({env['implementation']})"
    if submitted and submitted.split(".")[:2] != env["python"].split(".")[:2]:
        python += f"; submitted from Python {submitted} (another minor version: a pickled model may not load)"
    lines = [
        ("python", python),
        ("platform", f"{env['platform']}, {env['cpu']} x{env['cpu_count']}"),
    ]
    for gpu in env.get("gpus") or []:
        lines.append(("gpu", f"{gpu['index']}: {gpu['name']}, driver {gpu['driver']}, CUDA "
                             f"{gpu['cuda'] or '?'}, {gpu['memory']}"))  # fmt: skip
    packages = env.get("packages") or {}
    lines.append(("packages", f"{len(packages)} (sha256 {str(env['packages_hash'])[:16]})"))
    if env.get("runtime"):
        lines.append(("in", f"{env['runtime']} {env.get('runtime_id') or ''}".strip()))
    numeric = env.get("numeric_env") or {}
    if numeric:
        lines.append(("numeric", " ".join(f"{k}={v}" for k, v in sorted(numeric.items()))))
    if env.get("note"):
        lines.append(("note", str(env["note"])))
    return lines
