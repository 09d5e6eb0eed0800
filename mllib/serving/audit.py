"""The audit log: every deploy, rollback, stop, refusal, override, load test and key event, in the
registry (`mllib deploy history`). Rows are only ever added.
"""

from __future__ import annotations

import json
from typing import Any

from mllib.registry.db import Registry, where_equal
from mllib.serving.clock import Clock, iso


def record(
    reg: Registry,
    clock: Clock,
    *,
    user: str | None,
    action: str,
    result: str,
    env: str | None = None,
    model: str | None = None,
    version: int | None = None,
    deployment_id: str | None = None,
    key_id: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    ts = clock.time()
    with reg.transaction():
        reg.conn.execute(
            "INSERT INTO audit_log (ts, at, user, env, action, result, model, version,"
            " deployment_id, key_id, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ts,
                iso(ts),
                user,
                env,
                action,
                result,
                model,
                version,
                deployment_id,
                key_id,
                reason,
                json.dumps(detail, sort_keys=True) if detail else None,
            ),
        )


def history(
    reg: Registry, *, env: str | None = None, limit: int = 50, action: str | None = None
) -> list[dict[str, Any]]:
    """Audit rows, newest first."""
    where, args = where_equal(env=env, action=action)
    rows = reg.query(
        f"SELECT * FROM audit_log{where} ORDER BY ts DESC, id DESC LIMIT {int(limit)}", args
    )
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else None
    return rows
