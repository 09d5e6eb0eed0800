"""Pulling an agent's records into the local registry: changes since the cursor, merged idempotently.

The agent's registry keeps a change feed (agents/mllib_agent/feed.py). A sync asks for the runs
changed since this registry's cursor for that agent, pulls each one's rows (metric points only
after the ones already here), fetches the artifacts of finished runs into the local store (only
blobs it lacks) and completes the local log, then merges everything and moves the cursor in ONE
transaction. Syncing twice changes nothing; a sync cut off anywhere leaves either nothing or a
whole batch merged, and the next sync resumes from the cursor. Once an ended attempt is merged,
the agent is told to release its working copy and run folder (its records stay there).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.agents.retry import end_attempt
from mllib.agents.rpc import AgentClient
from mllib.agents.transfer import fetch_blobs, fetch_tree
from mllib.errors import MllibError
from mllib.registry import Registry
from mllib.registry.artifacts import model_artifact, model_version_of, register_model
from mllib.registry.environments import set_environment
from mllib.registry.runs import TERMINAL, finish_run, get_run, now
from mllib.runs.retry import RetryPolicy
from mllib.workspace import Workspace

BATCH = 200


@dataclass
class SyncReport:
    runs: int = 0
    metric_points: int = 0
    bytes_fetched: int = 0
    finished: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)


def get_cursor(reg: Registry, agent: str) -> int:
    rows = reg.query("SELECT cursor FROM agent_sync WHERE agent = ?", (agent,))
    return rows[0]["cursor"] if rows else 0


def _set_cursor(reg: Registry, agent: str, cursor: int) -> None:
    reg.db["agent_sync"].upsert({"agent": agent, "cursor": cursor, "synced_at": now()}, pk="agent")


def _running_here(reg: Registry, agent: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Runs of this registry whose current attempt runs on `agent`: only those take merges."""
    found = {}
    for run_id in run_ids:
        rows = reg.query(
            "SELECT * FROM agent_attempts WHERE run_id = ? ORDER BY attempt DESC LIMIT 1", (run_id,)
        )
        if rows and rows[0]["agent"] == agent and rows[0]["status"] == "running":
            found[run_id] = rows[0]
    return found


def _max_seq(reg: Registry, run_id: str) -> int:
    row = reg.conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM metrics WHERE run_id = ?", (run_id,)
    ).fetchone()
    return row[0]


def _pull(agent: AgentClient, reg: Registry, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    bundles: dict[str, dict[str, Any]] = {}
    have = {rid: _max_seq(reg, rid) for rid in run_ids}
    while have:
        got = agent.call("pull", runs=have, timeout=300)
        have = {}
        for rid, bundle in got.items():
            if bundle is None:
                continue
            if rid in bundles:
                bundles[rid]["metrics"] += bundle["metrics"]
            else:
                bundles[rid] = bundle
            if bundle["more"]:
                have[rid] = bundle["metrics"][-1][0]
    return bundles


def remote_log_path(agent: AgentClient, run_id: str) -> str:
    return posixpath.join(agent.root, "runs", run_id, "output.log")


def pull_log(
    agent: AgentClient,
    ws: Workspace,
    run_id: str,
    attempt: dict[str, Any],
    echo: Callable[[bytes], None] | None = None,
) -> int:
    """Append the attempt's new remote output to the local output.log (and echo it); returns bytes.

    The local file is the cursor: its size minus where this attempt began is the remote offset,
    so a reconnect continues exactly where the last byte landed.
    """
    run = get_run(ws.registry, run_id)
    local = Path(run.log_path or ws.run_dir(run_id) / "output.log")
    local.parent.mkdir(parents=True, exist_ok=True)
    offset = (local.stat().st_size if local.exists() else 0) - (attempt.get("log_start") or 0)
    try:
        handle = agent.conn.sftp.open(remote_log_path(agent, run_id), "rb")
    except FileNotFoundError:
        return 0
    received = 0
    with handle, open(local, "ab") as out:
        size = handle.stat().st_size
        if size <= offset:
            return 0
        handle.seek(offset)
        while received < size - offset:
            chunk = handle.read(min(1 << 20, size - offset - received))
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            received += len(chunk)
            if echo is not None:
                try:
                    echo(chunk)
                except (OSError, ValueError):
                    echo = None
    return received


def _fetch_artifacts(agent: AgentClient, ws: Workspace, artifacts: list[dict[str, Any]]) -> int:
    fetched = 0
    for art in artifacts:
        if art["kind"] == "model":
            fetched += fetch_tree(agent, ws.store, art["sha256"])
        else:
            fetched += fetch_blobs(agent, ws.store, [art["sha256"]])
    return fetched


def sync_agent(ws: Workspace, agent: AgentClient, *, batch: int = BATCH) -> SyncReport:
    """Merge everything that changed on `agent` since the last sync; see the module docstring."""
    reg = ws.registry
    name = agent.spec.name
    policy = RetryPolicy.from_config(ws.project.config)
    report = SyncReport()
    cursor = get_cursor(reg, name)
    while True:
        changed = agent.call("changes", since=cursor, limit=batch)
        if not changed:
            return report
        here = _running_here(reg, name, [rid for rid, _ in changed])
        bundles = _pull(agent, reg, list(here))
        ended = []
        for rid, bundle in bundles.items():
            row = bundle["run"]
            if row["status"] in TERMINAL and row.get("attempt") == here[rid]["attempt"]:
                report.bytes_fetched += _fetch_artifacts(agent, ws, bundle["artifacts"])
                pull_log(agent, ws, rid, here[rid])
                ended.append(rid)
        with reg.transaction():
            for rid, bundle in bundles.items():
                _apply(reg, rid, bundle, here[rid], policy, report)
            cursor = changed[-1][1]
            _set_cursor(reg, name, cursor)
        _release(agent, ended)


def _release(agent: AgentClient, run_ids: list[str]) -> None:
    """Everything of these ended attempts is here now: the agent may drop their working copies
    and run folders. Best effort: what stays is `mllib agents prune`'s to remove."""
    if not run_ids:
        return
    try:
        agent.call("release", run_ids=run_ids)
    except MllibError:
        pass


def _apply(
    reg: Registry,
    run_id: str,
    bundle: dict[str, Any],
    attempt: dict[str, Any],
    policy: RetryPolicy,
    report: SyncReport,
) -> None:
    row = bundle["run"]
    if row.get("attempt") != attempt["attempt"]:
        return  # rows of an earlier attempt of this run on that agent
    report.runs += 1
    conn = reg.conn
    conn.executemany(
        "INSERT INTO params (run_id, name, value, type, source) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value, type = excluded.type, "
        "source = excluded.source",
        [(run_id, p["name"], p["value"], p["type"], p["source"]) for p in bundle["params"]],
    )
    conn.executemany(
        "INSERT INTO eval_metrics (run_id, name, value) VALUES (?, ?, ?) "
        "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
        [(run_id, e["name"], e["value"]) for e in bundle["eval_metrics"]],
    )
    cur = conn.executemany(
        "INSERT OR IGNORE INTO metrics (run_id, seq, name, step, value, ts) VALUES (?, ?, ?, ?, ?, ?)",
        [(run_id, *m) for m in bundle["metrics"]],
    )
    report.metric_points += max(cur.rowcount, 0)
    conn.executemany(
        "INSERT INTO artifacts (run_id, path, kind, sha256, size, created_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, "
        "size = excluded.size, created_at = excluded.created_at",
        [
            (run_id, a["path"], a["kind"], a["sha256"], a["size"], a["created_at"])
            for a in bundle["artifacts"]
        ],
    )
    if bundle.get("environment"):  # where the attempt ran, as its worker saw it
        set_environment(reg, run_id, json.loads(bundle["environment"]["data"]))
    local = get_run(reg, run_id)
    if local.finished:
        return
    values: dict[str, Any] = {"phase": row.get("phase")}
    if row.get("started_at") and not local.started_at:
        values["started_at"] = row["started_at"]
    if row["status"] == "running":
        values["status"] = "running"
    reg.db["runs"].update(run_id, values)
    if row["status"] not in TERMINAL:
        return
    end_attempt(
        reg,
        run_id,
        attempt["attempt"],
        row["status"],
        row.get("failure_class"),
        row.get("error"),
        row.get("ended_at"),
    )
    if row["status"] == "failed" and policy.retries(attempt["attempt"], row.get("failure_class")):
        reg.db["runs"].update(run_id, {"phase": "retrying"})
        report.retrying.append(run_id)
        return
    status, failure_class, error = row["status"], row.get("failure_class"), row.get("error")
    if status == "failed":
        error = policy.final_reason(error, attempt["attempt"])
    if finish_run(
        reg,
        run_id,
        status,
        failure_class,
        error,
        ended_at=row.get("ended_at") or now(),
        exit_code=row.get("exit_code"),
        phase=None,
    ):
        report.finished.append(run_id)
        model = model_artifact(reg, run_id)
        if status == "succeeded" and model and model_version_of(reg, run_id) is None:
            register_model(reg, local.model, run_id, model["sha256"])
