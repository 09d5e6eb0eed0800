"""`mllib doctor`: check that a project's state is whole, and repair what can be repaired.

A check looks at the registry (SQLite's integrity check; a file emptied or deleted beside run
folders), at the run folders it does not know, and at every blob and dataset chunk of the store,
whose content is hashed again. A repair rebuilds the registry from the run folders' own records
(`record.json`, `events.jsonl`) when it is lost or damaged (moving the damaged file aside), adds
run folders a healthy registry lacks, and moves damaged blobs aside so that the next upload or
run storing the same content writes them again. Datasets come back as far as runs recorded
which versions they read; deployments, keys and the audit log only from a backup.

>>> report = check(Workspace.find())  # doctest: +SKIP
>>> report.ok, report.problems  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllib.registry.backup import integrity, replace
from mllib.registry.health import run_folders
from mllib.workspace import Workspace

QUARANTINE = "damaged"  # store/damaged/: blobs whose content no longer matches their name
SHOWN_IDS = 10


@dataclass
class Problem:
    what: str  # registry, runs, store, datasets
    detail: str
    fix: str


@dataclass
class Report:
    registry: str  # ok, damaged
    runs: int = 0  # in the registry
    run_folders: int = 0
    blobs_checked: int = 0
    chunks_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # what a repair did

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def check(ws: Workspace) -> Report:
    """Check the registry, the run folders and every stored blob and chunk; change nothing."""
    project = ws.project
    path = project.registry_path
    busy = project.config.registry.busy_timeout_s
    folders = {p.name: p for p in run_folders(path)}
    damage = integrity(path, busy_timeout_s=busy)
    report = Report("damaged" if damage else "ok", run_folders=len(folders))
    if damage:
        report.problems.append(
            Problem(
                "registry",
                "; ".join(damage),
                "mllib doctor --repair (rebuilds it from the run folders), or mllib doctor "
                "--restore BACKUP",
            )
        )
    else:
        known = {r["id"] for r in ws.registry.query("SELECT id FROM runs")}
        report.runs = len(known)
        unknown = sorted(set(folders) - known)
        if unknown:
            report.problems.append(
                Problem(
                    "runs",
                    f"{len(unknown)} run folder(s) the registry does not list: {_ids(unknown)}",
                    "mllib doctor --repair (adds them from their folders)",
                )
            )
        _check_artifacts(ws, report)
    _check_blobs(ws, report)
    return report


def repair(ws: Workspace) -> Report:
    """Rebuild or complete the registry from the run folders and move damaged blobs aside;
    returns the check made after, with what was done in `repaired`."""
    project = ws.project
    path = project.registry_path
    if integrity(path, busy_timeout_s=project.config.registry.busy_timeout_s):
        done = _rebuild(ws)
    else:
        imported, skipped = _import_folders(ws.registry, _unknown_folders(ws))
        done = [f"added {len(imported)} run(s) from their folders"] if imported else []
        done += _skipped(skipped)
    done += _quarantine(ws)
    fresh = Workspace(project)  # the registry may have been replaced: open it again
    report = check(fresh)
    report.repaired = done
    return report


def _ids(ids: list[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(ids[:SHOWN_IDS]) + more


def _unknown_folders(ws: Workspace) -> list[Path]:
    known = {r["id"] for r in ws.registry.query("SELECT id FROM runs")}
    return [p for p in run_folders(ws.project.registry_path) if p.name not in known]


def _rebuild(ws: Workspace) -> list[str]:
    """A new registry from the run folders, put in place of the damaged one (moved aside)."""
    from mllib.registry import Registry

    path = ws.project.registry_path
    # Built in a folder of its own beside the registry: same filesystem, no run folders beside.
    scratch = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=path.parent))
    try:
        new = Registry.open(scratch / path.name)
        try:
            imported, skipped = _import_folders(new, run_folders(path))
            new.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the one file moved
        finally:
            new.close()
        aside = replace(path, scratch / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    done = [f"rebuilt the registry from {len(imported)} run folder(s)"]
    if aside is not None:
        done.append(f"moved the damaged registry aside to {aside}")
    return done + _skipped(skipped)


def _skipped(skipped: list[str]) -> list[str]:
    if not skipped:
        return []
    return [f"left out {len(skipped)} run folder(s) with no record.json: {_ids(skipped)}"]


def _import_folders(reg, folders: list[Path]) -> tuple[list[str], list[str]]:
    """Insert the runs of `folders` that the registry lacks; (imported ids, skipped ids)."""
    from mllib.registry.runfolder import read_record

    imported, skipped = [], []
    for folder in folders:
        tables = read_record(folder)
        if tables is None:
            skipped.append(folder.name)
            continue
        with reg.transaction():
            _import_run(reg, folder, tables)
        imported.append(folder.name)
    return imported, skipped


def _import_run(reg, folder: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    from mllib.registry.runfolder import OPTIONAL_RUN_TABLES, RUN_TABLES

    present = set(reg.db.table_names())
    reg.db["runs"].insert_all(tables["runs"], ignore=True)
    reg.db["datasets"].insert_all(tables.get("datasets", []), ignore=True)
    for table in (*RUN_TABLES, *OPTIONAL_RUN_TABLES):
        if table in present and tables.get(table):
            reg.db[table].insert_all(tables[table], ignore=True)
    reg.db["model_aliases"].insert_all(tables.get("model_aliases", []), ignore=True)
    if "metrics" in tables:
        reg.db["metrics"].insert_all(tables["metrics"], ignore=True)
    else:
        _import_metrics(reg, folder, tables["runs"][0]["id"])


def _import_metrics(reg, folder: Path, run_id: str) -> None:
    """The run's metric points, read again from its events.jsonl as the supervisor read them."""
    from mllib.metric_values import to_stored
    from mllib.protocol.events import EVENTS_FILE, EventReader
    from mllib.registry.metrics import insert_points

    points = [
        (e["seq"], e["name"], e["step"], to_stored(e["value"]), e["ts"])
        for e in EventReader(folder / EVENTS_FILE).read()
        if e.get("type") == "metric"
    ]
    insert_points(reg, run_id, points)


def _check_artifacts(ws: Workspace, report: Report) -> None:
    """Artifacts the registry lists whose blob the store lacks."""
    rows = ws.registry.query("SELECT run_id, path, sha256 FROM artifacts")
    missing = sorted({r["run_id"] for r in rows if not ws.store.path(r["sha256"]).is_file()})
    if missing:
        report.problems.append(
            Problem(
                "store",
                f"artifacts of {len(missing)} run(s) are missing from the store: {_ids(missing)}",
                "restore the store from a copy; rerun those runs (mllib runs rerun RUN_ID)",
            )
        )


def _stores(ws: Workspace):
    from mllib.datasets.chunkstore import dataset_store

    return [("store", ws.store), ("datasets", dataset_store(ws.project.store_path).blobs)]


def _check_blobs(ws: Workspace, report: Report) -> None:
    for what, store in _stores(ws):
        damaged = []
        checked = 0
        for digest in store.digests():
            checked += 1
            if not store.verify(digest):
                damaged.append(digest[:16])
        if what == "store":
            report.blobs_checked = checked
        else:
            report.chunks_checked = checked
        if damaged:
            report.problems.append(
                Problem(
                    what,
                    f"{len(damaged)} blob(s) whose content no longer matches their sha256: "
                    f"{_ids(damaged)}",
                    "mllib doctor --repair (moves them aside; the next upload or run storing "
                    "the same content writes them again)",
                )
            )


def _quarantine(ws: Workspace) -> list[str]:
    done = []
    for what, store in _stores(ws):
        moved = 0
        for digest in list(store.digests()):
            if store.verify(digest):
                continue
            target = store.root / QUARANTINE / digest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(store.path(digest), target)
            moved += 1
        if moved:
            done.append(f"moved {moved} damaged {what} blob(s) aside to {store.root / QUARANTINE}")
    return done
