"""`mllib models list|show` as plain data (the --json forms; keys in the README): each model's
versions with the runs that made them, their latest evaluation, their aliases and where each is
deployed now.

>>> [m["name"] for m in list_models(ws)]  # doctest: +SKIP
['iris']
>>> show(ws, "iris@champion")["version"]  # doctest: +SKIP
3
"""

from __future__ import annotations

from typing import Any

from mllib.registry import models
from mllib.registry.evaluations import evaluation_history, latest_evaluations
from mllib.registry.metrics import metric_summary
from mllib.registry.models import ModelVersion
from mllib.registry.runs import get_params
from mllib.runs.model_choice import choose_version, parse_ref, unknown_model
from mllib.workspace import Workspace


def list_models(ws: Workspace) -> list[dict[str, Any]]:
    """Every model with a version, by name: how many versions, the newest, aliases, deployments."""
    aliases = models.aliases(ws.registry)
    deployed = _deployed(ws)
    found = []
    for name in models.model_names(ws.registry):
        rows = models.versions(ws.registry, name)
        newest = rows[0]
        found.append(
            {
                "name": name,
                "versions": len(rows),
                "latest_version": newest.version,
                "latest_run_id": newest.run_id,
                "created_at": newest.created_at,
                "aliases": aliases.get(name, {}),
                "deployed": {d["env"]: d["version"] for d in deployed.get(name, [])},
            }
        )
    return found


def show(ws: Workspace, ref: str) -> dict[str, Any]:
    """`NAME`: the model and all its versions, newest first; `NAME:VERSION` or `NAME@ALIAS`: that
    version alone, with its training params and metrics."""
    parsed = parse_ref(ref)
    if parsed.version is None and parsed.alias is None:
        return _model(ws, parsed.name)
    chosen = choose_version(ws, ref)
    row = models.get_version(ws.registry, chosen.model, chosen.version or 0)
    assert row is not None  # choose_version found it
    version = _versions(ws, [row])[0]
    summary = metric_summary(ws.registry, row.run_id)
    return version | {
        "metrics": {name: s["last"] for name, s in summary.items()},
        "history": evaluation_history(ws.registry, row.run_id),
    }


def _model(ws: Workspace, name: str) -> dict[str, Any]:
    rows = models.versions(ws.registry, name)
    if not rows:
        raise unknown_model(ws, name)
    versions = _versions(ws, rows)
    return {
        "name": name,
        "aliases": models.aliases(ws.registry, name).get(name, {}),
        "deployed": {d["env"]: d["version"] for d in _deployed(ws).get(name, [])},
        "versions": versions,
    }


def _versions(ws: Workspace, rows: list[ModelVersion]) -> list[dict[str, Any]]:
    """The version objects of `rows` (of one model)."""
    evaluations = latest_evaluations(ws.registry, [r.run_id for r in rows])
    name = rows[0].name
    named = models.aliases(ws.registry, name).get(name, {})
    deployed = _deployed(ws).get(name, [])
    found = []
    for row in rows:
        evaluation = evaluations.get(row.run_id)
        found.append(
            {
                "model": row.name,
                "version": row.version,
                "ref": row.ref,
                "run_id": row.run_id,
                "created_at": row.created_at,
                "sha256": row.sha256,
                "aliases": sorted(a for a, v in named.items() if v == row.version),
                "deployed": [
                    {k: d[k] for k in ("env", "state", "url", "deployment_id")}
                    for d in deployed
                    if d["version"] == row.version
                ],
                "params": get_params(ws.registry, row.run_id),
                "evaluation": evaluation.as_dict() if evaluation else None,
                "evaluations": evaluation.count if evaluation else 0,
            }
        )
    return found


def _deployed(ws: Workspace) -> dict[str, list[dict[str, Any]]]:
    """Model name -> the deployments serving one of its versions now (starting or live)."""
    from mllib.serving.control import records
    from mllib.serving.control.deploy import reconcile

    reconcile(ws)  # a server that died is not "deployed"
    found: dict[str, list[dict[str, Any]]] = {}
    for dep in records.running(ws.registry):
        if dep.version is not None:
            found.setdefault(dep.model, []).append(
                {
                    "env": dep.env,
                    "state": dep.state,
                    "url": dep.url,
                    "deployment_id": dep.id,
                    "version": dep.version,
                }
            )
    return found
