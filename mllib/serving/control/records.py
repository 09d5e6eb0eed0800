"""Deployments in the registry: one row per attempt, moving starting -> live -> stopped (or
failed / crashed), so `deploy status`, `history` and `rollback` read what really happened.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields, replace
from typing import Any

from mllib.registry.db import Registry
from mllib.registry.runs import now
from mllib.serving.control import targets
from mllib.serving.spec import Servable, ServerSpec
from mllib.terminal import notice

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
RUNNING = ("starting", "live")


def new_deployment_id() -> str:
    return "d" + "".join(secrets.choice(ID_ALPHABET) for _ in range(11))


@dataclass
class Deployment:
    """One row of the deployments table."""

    id: str
    env: str
    action: str
    state: str
    model: str
    run_id: str
    artifact: str
    created_at: str
    version: int | None = None
    model_sha256: str | None = None
    code_hash: str | None = None
    host: str | None = None
    port: int | None = None
    url: str | None = None
    workers: int | None = None
    api_servers: int | None = None
    pid: int | None = None
    pid_ctime: float | None = None
    dir: str | None = None
    log_path: str | None = None
    user: str | None = None
    forced: int | None = None
    reason: str | None = None
    error: str | None = None
    previous_id: str | None = None
    replaced_by: str | None = None
    live_at: str | None = None
    stopped_at: str | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None

    @classmethod
    def starting(
        cls,
        spec: ServerSpec,
        *,
        action: str,
        user: str,
        log_path: str,
        forced: bool,
        reason: str | None,
        previous: Deployment | None,
    ) -> Deployment:
        """The row of a deployment whose server, described by `spec`, is about to start."""
        servable = spec.servable
        return cls(
            id=spec.deployment,
            env=spec.env,
            action=action,
            state="starting",
            **servable_fields(servable),
            host=spec.host,
            port=spec.port,
            url=spec.url,
            workers=spec.workers,
            api_servers=spec.api_servers,
            dir=spec.state_dir,
            log_path=log_path,
            user=user,
            forced=int(forced),
            reason=reason,
            previous_id=previous.id if previous else None,
            created_at=now(),
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Deployment:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def marker(self) -> str:
        """What every process of its server carries (process.MARKER): the id of the deployment
        that started it, which a promotion's row shares."""
        from pathlib import Path

        return Path(self.dir).name if self.dir else self.id

    @property
    def label(self) -> str:
        return (
            f"{self.model} v{self.version}" if self.version else f"{self.model} (run {self.run_id})"
        )


def insert(reg: Registry, deployment: Deployment) -> None:
    with reg.transaction():
        reg.db["deployments"].insert(
            {k: v for k, v in deployment.__dict__.items() if v is not None}
        )
    _state_changed(reg)


def update(reg: Registry, deployment_id: str, **values: Any) -> None:
    with reg.transaction():
        reg.db["deployments"].update(deployment_id, values)
    if "state" in values:
        _state_changed(reg)


def _state_changed(reg: Registry) -> None:
    """Every place a deployment changes state comes here: Prometheus' targets follow it."""
    try:
        targets.refresh(reg)
    except OSError as exc:  # the next change (or `mllib monitoring init`) writes it whole
        notice(f"could not update the Prometheus targets file: {exc}")


def get(reg: Registry, deployment_id: str) -> Deployment:
    return Deployment.from_row(
        reg.query("SELECT * FROM deployments WHERE id = ?", (deployment_id,))[0]
    )


def running(reg: Registry, env: str | None = None) -> list[Deployment]:
    """Deployments whose server should be up (starting or live), oldest first."""
    sql = "SELECT * FROM deployments WHERE state IN ('starting', 'live')"
    args: tuple = ()
    if env:
        sql += " AND env = ?"
        args = (env,)
    return [Deployment.from_row(r) for r in reg.query(sql + " ORDER BY created_at", args)]


def live(reg: Registry, env: str) -> Deployment | None:
    """The deployment serving `env` now."""
    rows = reg.query(
        "SELECT * FROM deployments WHERE env = ? AND state = 'live' ORDER BY live_at DESC LIMIT 1",
        (env,),
    )
    return Deployment.from_row(rows[0]) if rows else None


def latest(reg: Registry, env: str) -> Deployment | None:
    """The newest deployment of `env`, whatever its state."""
    rows = reg.query(
        "SELECT * FROM deployments WHERE env = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (env,),
    )
    return Deployment.from_row(rows[0]) if rows else None


@dataclass(frozen=True)
class Change:
    """What the team server is told of a deployment (mllib.serving.control.reporting): it went
    live (`action` its own: deploy, rollback, promote), or `mllib deploy stop` stopped it."""

    deployment: Deployment
    stopped: bool = False

    @property
    def at(self) -> str:
        at = self.deployment.stopped_at if self.stopped else self.deployment.live_at
        return at or ""

    @property
    def action(self) -> str:
        return "stop" if self.stopped else self.deployment.action

    @property
    def id(self) -> str:
        """Its id on the server: the deployment's, `-stop` added for its stop."""
        return f"{self.deployment.id}-stop" if self.stopped else self.deployment.id


def unreported(reg: Registry) -> list[Change]:
    """What went live here, or was stopped by `mllib deploy stop` after it went live, and the
    team server was not told of yet, oldest first (mllib.server.deployments: what its
    `NAME@prod` follows). A deployment replaced by another, or crashed, is no stop."""
    rows = reg.query(
        "SELECT * FROM deployments WHERE live_at IS NOT NULL AND reported_at IS NULL"
        " ORDER BY live_at, rowid"
    )
    stops = reg.query(
        "SELECT * FROM deployments WHERE live_at IS NOT NULL AND state = 'stopped'"
        " AND replaced_by IS NULL AND stopped_at IS NOT NULL AND stop_reported_at IS NULL"
        " ORDER BY stopped_at, rowid"
    )
    changes = [Change(Deployment.from_row(r)) for r in rows]
    changes += [Change(Deployment.from_row(r), stopped=True) for r in stops]
    return sorted(changes, key=lambda c: c.at)


def reported(reg: Registry, change: Change) -> None:
    """The team server has recorded this change."""
    column = "stop_reported_at" if change.stopped else "reported_at"
    with reg.transaction():
        reg.db["deployments"].update(change.deployment.id, {column: now()})


def previous_artifact(reg: Registry, env: str, current: Deployment) -> Deployment | None:
    """The newest earlier deployment of `env` that went live with a different artifact."""
    rows = reg.query(
        "SELECT * FROM deployments WHERE env = ? AND live_at IS NOT NULL AND artifact != ?"
        " AND created_at < ? ORDER BY created_at DESC LIMIT 1",
        (env, current.artifact, current.created_at),
    )
    return Deployment.from_row(rows[0]) if rows else None


def last_port(reg: Registry, env: str) -> int | None:
    """The port `env` used last, so its URL stays the same from one deploy to the next."""
    rows = reg.query(
        "SELECT port FROM deployments WHERE env = ? AND port IS NOT NULL"
        " ORDER BY created_at DESC LIMIT 1",
        (env,),
    )
    return rows[0]["port"] if rows else None


def promoted(reg: Registry, row: str, servable: Servable, user: str) -> str:
    """A row for the version a promotion made stable (same deployment, port and folder), the
    old one (`row`) stopped and replaced by it: what `deploy status` and `rollback` read."""
    old = get(reg, row)
    new = replace(
        old,
        id=new_deployment_id(),
        action="promote",
        state="live",
        **servable_fields(servable),
        user=user,
        forced=0,
        reason=None,
        error=None,
        previous_id=old.id,
        replaced_by=None,
        created_at=now(),
        live_at=now(),
        stopped_at=None,
    )
    insert(reg, new)
    update(reg, old.id, state="stopped", stopped_at=now(), replaced_by=new.id)
    return new.id


def servable_fields(servable: Servable) -> dict[str, Any]:
    """A row's fields that say what it serves."""
    return {
        "model": servable.model,
        "version": servable.version,
        "run_id": servable.run_id,
        "model_sha256": servable.model_sha256,
        "code_hash": servable.code_hash,
        "artifact": servable.artifact,
    }
