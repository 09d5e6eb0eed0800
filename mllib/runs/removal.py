"""`mllib runs rm`: a run taken out of the project whole: its registry rows (params, metrics,
evaluation, artifacts, model version, attempts, ...), its folder, and the stored objects (model,
files, code snapshot) that no other run or deployment uses any more.

Refused, naming what to do, for a run still active, a run whose model version a running
deployment serves or an alias names, a trial of a study, and a training run that evaluation runs
not removed with it evaluated. History stays: deployments and the audit log keep their rows.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from mllib.errors import EXIT_REFUSED, MllibError
from mllib.registry.runs import RunRecord, get_run
from mllib.workspace import Workspace

GRACE_S = 600.0  # a stored object written or reused this recently may belong to a run starting


class RunInUseError(MllibError):
    """A run that something still needs: refused, as a guard refuses (exit 5)."""

    exit_code = EXIT_REFUSED


@dataclass
class Removed:
    runs: list[str]
    folders: int = 0
    objects: int = 0
    bytes_freed: int = 0
    kept_recent: int = 0  # unused objects left for a later removal (stored in the last GRACE_S)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "removed": self.runs,
            "folders": self.folders,
            "objects": self.objects,
            "bytes_freed": self.bytes_freed,
            "kept_recent": self.kept_recent,
        }


def remove_runs(ws: Workspace, run_ids: list[str]) -> Removed:
    """Remove the runs `run_ids` name (ids or unique prefixes), all or none."""
    reg = ws.registry
    with reg.transaction():  # checked and removed under the write lock: nothing starts using them
        runs = {r.id: r for r in (get_run(reg, ref) for ref in run_ids)}
        _refuse_in_use(ws, runs)
        ids = list(runs)
        marks = ", ".join("?" * len(ids))
        candidates = _objects_of(reg, ids)
        for table in _tables_naming_runs(ws):
            reg.conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
        reg.conn.execute(f"DELETE FROM runs WHERE id IN ({marks})", ids)
    result = Removed(ids)
    for run in runs.values():
        folder = ws.run_folder(run).path
        if folder.is_dir() and folder.resolve().is_relative_to(ws.project.runs_dir.resolve()):
            shutil.rmtree(folder, ignore_errors=True)
            result.folders += 1
    _free(ws, candidates, result)
    return result


def _refuse_in_use(ws: Workspace, runs: dict[str, RunRecord]) -> None:
    reg = ws.registry
    ids = list(runs)
    marks = ", ".join("?" * len(ids))
    for run in runs.values():
        if not run.finished:
            raise RunInUseError(
                f"Run {run.id} is {run.status}", hint=f"Cancel it first: mllib runs cancel {run.id}"
            )
    tables = set(reg.db.table_names())
    if "deployments" in tables:
        for row in reg.query(
            f"SELECT env, run_id FROM deployments WHERE state IN ('starting', 'live') "
            f"AND run_id IN ({marks})",
            ids,
        ):
            raise RunInUseError(
                f"Run {row['run_id']} is the model deployed on {row['env']}",
                hint=f"Deploy another version there or stop it: mllib deploy stop --env {row['env']}",
            )
    for row in reg.query(
        f"SELECT m.run_id, a.alias, m.name AS model, m.version FROM model_aliases a JOIN models m "
        f"ON a.name = m.name AND a.version = m.version WHERE m.run_id IN ({marks})",
        ids,
    ):
        raise RunInUseError(
            f"Run {row['run_id']} is {row['model']} version {row['version']}, which alias "
            f"{row['alias']} names",
            hint=f"Move it, or remove it first: mllib models alias {row['model']}@{row['alias']} --rm",
        )
    if "study_trials" in tables:
        for row in reg.query(
            f"SELECT study, number, run_id FROM study_trials WHERE run_id IN ({marks})", ids
        ):
            raise RunInUseError(
                f"Run {row['run_id']} is trial {row['number']} of study {row['study']}",
                hint="A study keeps its trials' runs; mllib tune show lists them.",
            )
    for row in reg.query(
        f"SELECT id, source_run_id FROM runs WHERE source_run_id IN ({marks}) AND id NOT IN ({marks})",
        ids + ids,
    ):
        raise RunInUseError(
            f"Run {row['source_run_id']} was evaluated by run {row['id']}",
            hint=f"Remove them together: mllib runs rm {row['source_run_id']} {row['id']}",
        )


def _tables_naming_runs(ws: Workspace) -> list[str]:
    """The tables whose rows belong to a run (a foreign key to runs.id)."""
    reg = ws.registry
    found = []
    for table in reg.db.table_names():
        keys = reg.query(f"PRAGMA foreign_key_list({table})")
        if any(k["table"] == "runs" and k["from"] == "run_id" for k in keys):
            found.append(table)
    # model_aliases hang on models: none name a removed run's version (refused above)
    return found


def _objects_of(reg: Any, ids: list[str]) -> tuple[set[str], set[str]]:
    """(trees, file blobs) the runs' rows name: their model and code snapshot, their files."""
    marks = ", ".join("?" * len(ids))
    return _named(
        reg.query(f"SELECT kind, sha256 FROM artifacts WHERE run_id IN ({marks})", ids),
        reg.query(f"SELECT code_hash FROM runs WHERE id IN ({marks})", ids),
    )


def _named(
    artifacts: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> tuple[set[str], set[str]]:
    trees = {a["sha256"] for a in artifacts if a["kind"] == "model"}
    trees |= {r["code_hash"] for r in runs if r["code_hash"]}
    return trees, {a["sha256"] for a in artifacts if a["kind"] != "model"}


def _free(ws: Workspace, candidates: tuple[set[str], set[str]], result: Removed) -> None:
    """Delete the candidates' objects that nothing left in the registry names (a tree: its
    manifest and files), except those stored again lately (a run starting may be reusing them)."""
    store = ws.store
    live = _expand(store, *_objects_in_use(ws))
    for digest in _expand(store, *candidates) - live:
        if not store.has(digest):
            continue
        if store.unused_for(digest) < GRACE_S:
            result.kept_recent += 1
            continue
        result.bytes_freed += store.delete(digest)
        result.objects += 1


def _objects_in_use(ws: Workspace) -> tuple[set[str], set[str]]:
    """(trees, file blobs) that what stays in the registry names, deployments' included."""
    reg = ws.registry
    trees, files = _named(
        reg.query("SELECT kind, sha256 FROM artifacts"), reg.query("SELECT code_hash FROM runs")
    )
    if "deployments" in set(reg.db.table_names()):
        for row in reg.query("SELECT model_sha256, code_hash FROM deployments"):
            trees |= {v for v in row.values() if v}
    return trees, files


def _expand(store: Any, trees: set[str], files: set[str]) -> set[str]:
    """The digests, with the files each tree (a manifest) holds."""
    from mllib.store.trees import read_tree

    found = set(files) | set(trees)
    for digest in trees:
        try:
            found |= {f.sha256 for f in read_tree(store, digest).files}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone already, or not a manifest: only its own digest counts
    return found
