"""Keeping an agent's disk in bounds without losing what a retried or rerun job re-uses.

What a run leaves on the agent, and what becomes of it:

- `work/<run>` (its working copy) and `runs/<run>` (spec, events, log): removed when mllib has
  synced the finished run (`release`), or by `prune` once the run ended `older_than` ago.
  Both are rebuilt from the store if the run is started here again.
- `work/<run>/.env.remote` (the run's env-file values, secrets among them): removed as soon as
  the run ends, by the process that supervised it (see runner.py), whether or not mllib ever
  syncs the run; should that process be killed, the next `info`, `start` or `prune` does it.
- `data/<version>` (read-only dataset copies): removed by `prune` when no active run uses them
  and none started with them for `older_than`; rebuilt from the chunks in the store.
- `store/` (code blobs, models, dataset chunks): the agent's cache, kept within a size cap by
  evicting the least recently used blobs first. `missing` and `blob_paths` mark the blobs they
  find as used, so whatever a job sends or fetches again stays longest. A finished run's outputs
  are never evicted before its folder is released (mllib has synced them).
- `envs/` (project venvs the venv runtime built, keyed by their content): part of the cache,
  evicted with the blobs, least recently used first, never one a run uses; `prune` removes
  those no run used for `older_than`.
- `incoming/` (uploads): files older than an hour belong to no live transfer.

Each function takes the agent's root and workspace; the server calls them under its start lock,
so no start sees the store change between checking and using it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

INCOMING_STALE_S = 3600.0
FINISHED = ("succeeded", "failed", "cancelled")
AGENT_FILE = "agent.json"  # in a run's folder: what the agent gave the run (dataset copies)
ENV_FILE = ".env.remote"  # in a run's working copy
ENVS_DIR = "envs"  # the venv runtime's cache of project venvs (MLLIB_ENV_CACHE)


START_LOCK_TIMEOUT_S = 300.0  # a start materialises datasets: it may take minutes


@contextlib.contextmanager
def start_lock(root: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the agent's start lock (True); with `wait=False`, False when another process holds it.

    Starts, releases, prunes and env-file removals take it, so none sees another half done."""
    from mllib.locks import file_lock, try_lock

    path = root / "start.lock"
    if not wait:
        with try_lock(path) as held:
            yield held
        return
    with file_lock(path, timeout=START_LOCK_TIMEOUT_S, what="the agent's start lock"):
        yield True


def drop_env_files(root: Path, reg, run_ids: Iterable[str] | None = None) -> list[str]:
    """Delete the env files of runs that are not active here (ended, or never recorded): of
    `run_ids`, or of every working copy. Call it under the start lock (a start writes the file
    before it records the run). Returns the runs whose file went."""
    from mllib.registry.runs import ACTIVE

    work = root / "work"
    names = (
        list(run_ids)
        if run_ids is not None
        else [p.parent.name for p in work.glob(f"*/{ENV_FILE}")]
    )
    dropped = []
    for run_id in names:
        path = work / run_id / ENV_FILE
        if not path.exists():
            continue
        rows = reg.query("SELECT status FROM runs WHERE id = ?", (run_id,))
        if rows and rows[0]["status"] in ACTIVE:
            continue
        path.unlink(missing_ok=True)
        dropped.append(run_id)
    return dropped


def mark_used(store, shas: Iterable[str]) -> None:
    """Record that these blobs were just used (their mtime orders the cache's eviction)."""
    for sha in shas:
        try:
            os.utime(store.path(sha))
        except (FileNotFoundError, ValueError):
            continue


def mark_copies_used(cache: Path, digests: Iterable[str]) -> None:
    """Record that these dataset copies were just used (a copy's stamp's mtime)."""
    for digest in digests:
        with contextlib.suppress(FileNotFoundError):
            os.utime(cache / f"{digest}.ok")


def write_agent_file(run_dir: Path, datasets: list[str]) -> None:
    (run_dir / AGENT_FILE).write_text(json.dumps({"datasets": datasets}) + "\n")


def _agent_file(run_dir: str | None) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir or "") / AGENT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def tree_size(path: Path) -> int:
    """Bytes of the files under `path` (0 when it does not exist)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def remove(path: Path) -> int:
    """Delete a file or folder (read-only folders too); returns the bytes it held."""
    if not path.exists() and not path.is_symlink():
        return 0
    size = tree_size(path)
    if path.is_dir() and not path.is_symlink():
        for folder, _dirs, _files in os.walk(path):
            os.chmod(folder, 0o700)
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def release(root: Path, reg, run_ids: Iterable[str]) -> dict[str, Any]:
    """Remove the working copies and run folders of these runs, if they have finished here."""
    released, freed = [], 0
    for run_id in run_ids:
        rows = reg.query("SELECT status FROM runs WHERE id = ?", (run_id,))
        if not rows or rows[0]["status"] not in FINISHED:
            continue
        folders = [root / "work" / run_id, root / "runs" / run_id]
        if not any(folder.exists() for folder in folders):
            continue
        freed += sum(remove(folder) for folder in folders)
        released.append(run_id)
    return {"runs": released, "freed_bytes": freed}


def _held_outputs(reg, store) -> set[str]:
    """Blobs of finished runs whose folders are still here: outputs mllib has not synced yet."""
    from mllib.store import read_tree

    held: set[str] = set()
    rows = reg.query(
        "SELECT a.sha256, a.kind, r.run_dir FROM artifacts a JOIN runs r ON r.id = a.run_id"
    )
    for row in rows:
        if not row["run_dir"] or not Path(row["run_dir"]).is_dir():
            continue
        held.add(row["sha256"])
        if row["kind"] == "model":
            try:
                held.update(f.sha256 for f in read_tree(store, row["sha256"]).files)
            except (OSError, ValueError):
                continue
    return held


def _blobs(store) -> Iterator[tuple[float, int, str, Path]]:
    """(last use, size, sha256, path) of every blob in the store."""
    if not store.objects.is_dir():
        return
    for prefix in os.scandir(store.objects):
        if not prefix.is_dir():
            continue
        for entry in os.scandir(prefix.path):
            try:
                info = entry.stat()
            except FileNotFoundError:
                continue
            yield info.st_mtime, info.st_size, prefix.name + entry.name, Path(entry.path)


def trim_cache(reg, store, cap_bytes: int, envs: Path | None = None) -> dict[str, int]:
    """Evict the least recently used blobs and venvs (of `envs`, the venv runtime's cache)
    until both together hold at most `cap_bytes`; never a venv a run uses."""
    from mllib.runtime import venvs as venv_cache

    entries = [(used, size, "blob", path) for used, size, _sha, path in _blobs(store)]
    for env in venv_cache.list_envs(envs) if envs is not None else []:
        entries.append((float(env["last_used"]), int(env.get("size", 0)), "env", env["key"]))
    entries.sort(key=lambda entry: entry[0])
    total = sum(size for _, size, _, _ in entries)
    evicted = freed = envs_removed = 0
    if total > cap_bytes:
        held = _held_outputs(reg, store)
        for _used, size, kind, item in entries:
            if total <= cap_bytes:
                break
            if kind == "env":
                if not venv_cache.remove(envs, item):  # a run holds it
                    continue
                envs_removed += 1
            elif Path(item).parent.name + Path(item).name in held:
                continue
            else:
                Path(item).unlink(missing_ok=True)
                evicted += 1
            total -= size
            freed += size
    return {"blobs": evicted, "envs": envs_removed, "freed_bytes": freed, "store_bytes": total}


def _datasets_in_use(reg) -> set[str]:
    from mllib.registry.runs import active_runs

    used: set[str] = set()
    for run in active_runs(reg):
        used.update(_agent_file(run.run_dir).get("datasets", []))
    return used


def prune(root: Path, reg, store, *, older_than_s: float, cap_bytes: int | None) -> dict[str, Any]:
    """Free what finished runs left: their folders ended `older_than_s` ago, dataset copies no
    active run uses and none used since, stale uploads, and cached blobs over `cap_bytes`."""
    cutoff = time.time() - older_than_s
    report: dict[str, Any] = {}
    finished = reg.query(f"SELECT id, ended_at FROM runs WHERE status IN {FINISHED}")
    report["runs"] = release(
        root, reg, [r["id"] for r in finished if _epoch(r["ended_at"]) < cutoff]
    )
    report["datasets"] = _prune_datasets(root / "data", _datasets_in_use(reg), cutoff)
    report["incoming"] = _prune_folder(
        root / "incoming", min(cutoff, time.time() - INCOMING_STALE_S)
    )
    report["envs"] = _prune_envs(root / ENVS_DIR, older_than_s)
    if cap_bytes is not None:
        report["cache"] = trim_cache(reg, store, cap_bytes, root / ENVS_DIR)
    report["freed_bytes"] = sum(part.get("freed_bytes", 0) for part in report.values())
    return report


def _prune_datasets(cache: Path, in_use: set[str], cutoff: float) -> dict[str, int]:
    removed = freed = 0
    if not cache.is_dir():
        return {"copies": 0, "freed_bytes": 0}
    for entry in list(cache.iterdir()):
        digest = entry.name
        if entry.suffix or digest.startswith(".") or digest in in_use:
            continue  # stamps and locks go with their copy; temporary folders finish first
        stamp = cache / f"{digest}.ok"
        last_use = stamp.stat().st_mtime if stamp.exists() else entry.lstat().st_mtime
        if last_use >= cutoff:
            continue
        stamp.unlink(missing_ok=True)
        freed += remove(entry)
        (cache / f"{digest}.lock").unlink(missing_ok=True)
        removed += 1
    return {"copies": removed, "freed_bytes": freed}


def _prune_envs(envs: Path, older_than_s: float) -> dict[str, int]:
    """Remove the venvs no run used for `older_than_s` (none a run uses now)."""
    from mllib.runtime import venvs as venv_cache

    report = venv_cache.trim(1 << 62, root=envs, older_than_s=older_than_s)
    return {"envs": report["envs"], "freed_bytes": report["freed_bytes"]}


def _prune_folder(folder: Path, cutoff: float) -> dict[str, int]:
    removed = freed = 0
    if folder.is_dir():
        for entry in list(folder.iterdir()):
            if entry.lstat().st_mtime < cutoff:
                freed += remove(entry)
                removed += 1
    return {"files": removed, "freed_bytes": freed}


def _epoch(iso: str | None) -> float:
    if not iso:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
