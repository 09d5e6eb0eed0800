"""Deployments the team server is told of: what `mllib deploy`, `deploy rollback` and a finished
`deploy promote` put live on a client's staging or prod, so the server's `NAME@prod` and
`NAME@staging` mean the version serving there (mllib.server.evaluations) and a schedule of
`NAME@prod` follows each deploy.

A record is the client's deployment (its id, which makes sending it again harmless), who sent
it, the model and version, the run that made that version, the identity of what it serves (the
model files' tree hash and the code's), the environment and when it went live there; or a stop
(`mllib deploy stop`), after which nothing is deployed there. `NAME@ENV` is the version of the
newest record of NAME in ENV, unless `mllib models alias NAME:V ENV` was set on the server after
it: the later of the two wins.

The server's version a deployment serves is found by identity only, never by its number (a
laptop's v1 and the server's v1 may be different models): the version the deployed run made
(trained with --remote), else the version whose model files and code are the same as those
deployed. When there is none, the server holds no version of what is deployed and says so.

>>> record(reg, who, {"id": "d1a2...", "model": "iris", "version": 2, "env": "prod", ...})  # doctest: +SKIP
{'id': 'd1a2...', 'model': 'iris', 'version': 2, 'env': 'prod', 'created': True, 'known': True}
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from mllib.errors import UsageError
from mllib.registry import models
from mllib.registry.runs import iso, now
from mllib.serving.control.settings import ENVS

if TYPE_CHECKING:
    import sqlite_utils

    from mllib.registry import Registry
    from mllib.server.accounts import User


@cache
def migrations() -> sqlite_utils.Migrations:
    """The server's deployments table (mllib.plugins.SERVER_MIGRATIONS)."""
    from mllib.registry.schema import new_set

    migrations_ = new_set("mllib.server.deployments")

    @migrations_(name="0001_server_deployments")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("server_deployments").create(
            {
                "id": str,  # the client's deployment id
                "user": str,  # who sent it (their login)
                "model": str,
                "version": int,  # the client's version number
                "run_id": str,  # the run that made it
                "env": str,
                "action": str,  # deploy, rollback, promote
                "deployed_at": str,  # when it went live there
                "recorded_at": str,
            },
            pk="id",
            not_null={"user", "model", "run_id", "env", "action", "deployed_at", "recorded_at"},
        )
        db.execute(
            "CREATE INDEX server_deployments_of ON server_deployments (model, env, deployed_at)"
        )

    @migrations_(name="0002_server_deployments_identity")
    def identity(db: sqlite_utils.Database) -> None:
        # what the deployment serves, by content: its model tree's and its code tree's hashes
        # (NULL for records sent before: those match by their run only)
        table = db.table("server_deployments")
        table.add_column("model_sha256", str)
        table.add_column("code_hash", str)

    return migrations_


STOP = "stop"  # the action of a record saying nothing is deployed there any more
ACTIONS = ("deploy", "rollback", "promote", STOP)


def record(reg: Registry, who: User, body: dict[str, Any]) -> dict[str, Any]:
    """Record that `body`'s deployment went live (once: sending it again changes nothing). The
    record, with `created` (false when it was there already) and `known` (whether the server
    has the version it serves, which its schedules can then evaluate; true for a stop)."""
    if body["env"] not in ENVS:
        raise UsageError(f"Unknown environment {body['env']!r}", hint="One of: staging, prod.")
    if (body.get("action") or "deploy") not in ACTIONS:
        raise UsageError(
            f"Unknown action {body['action']!r}", hint=f"One of: {', '.join(ACTIONS)}."
        )
    try:  # the client's time, as the registry writes it
        at = iso(datetime.fromisoformat(body["deployed_at"].replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise UsageError(f"Not a time: {body['deployed_at'][:40]!r}") from None
    row = {
        "id": body["id"],
        "user": who.name,
        "model": body["model"],
        "version": body.get("version"),
        "run_id": body["run_id"],
        "env": body["env"],
        "action": body.get("action") or "deploy",
        "deployed_at": at,
        "recorded_at": now(),
        "model_sha256": body.get("model_sha256"),
        "code_hash": body.get("code_hash"),
    }
    names = ", ".join(f'"{k}"' for k in row)
    with reg.transaction():
        created = reg.conn.execute(
            f"INSERT INTO server_deployments ({names}) VALUES ({', '.join('?' for _ in row)}) "
            "ON CONFLICT (id) DO NOTHING",
            tuple(row.values()),
        ).rowcount
    [stored] = reg.query("SELECT * FROM server_deployments WHERE id = ?", (row["id"],))
    held = stored["action"] == STOP or served(reg, stored) is not None
    return public(stored) | {"created": created == 1, "known": held}


def latest(reg: Registry, model: str, env: str) -> dict[str, Any] | None:
    """The newest deployment of `model` the server was told of in `env`, if any."""
    rows = reg.query(
        "SELECT * FROM server_deployments WHERE model = ? AND env = ? "
        "ORDER BY deployed_at DESC, recorded_at DESC LIMIT 1",
        (model, env),
    )
    return rows[0] if rows else None


def serving(reg: Registry, model: str) -> list[dict[str, Any]]:
    """What each environment serves of `model`, as the newest record there says (none after a
    stop): the record, with `held_version`, the server's version it is (None: one the server
    does not hold). `mllib models show NAME` prints it."""
    found = []
    for env in ENVS:
        row = latest(reg, model, env)
        if row is None or row["action"] == STOP:
            continue
        version = served(reg, row)
        found.append(public(row) | {"held_version": version.version if version else None})
    return found


def get(reg: Registry, deployment_id: str | None) -> dict[str, Any] | None:
    """The record of deployment `deployment_id` (None: none, or no id)."""
    if deployment_id is None:
        return None
    rows = reg.query("SELECT * FROM server_deployments WHERE id = ?", (deployment_id,))
    return rows[0] if rows else None


def served(reg: Registry, row: dict[str, Any]) -> models.ModelVersion | None:
    """The server's version a deployment serves, by identity only (see the module): the one its
    run made when that run is the server's, else the one with the same model files and code;
    None when the server holds no such version, or the record is a stop."""
    if row["action"] == STOP:
        return None
    made = models.version_of_run(reg, row["run_id"])
    if made is not None and made.name == row["model"]:
        return made
    if not row.get("model_sha256") or not row.get("code_hash"):
        return None
    same = reg.query(
        "SELECT m.version FROM models m JOIN runs r ON r.id = m.run_id WHERE m.name = ? "
        "AND m.sha256 = ? AND r.code_hash = ? ORDER BY m.version DESC LIMIT 1",
        (row["model"], row["model_sha256"], row.get("code_hash")),
    )
    return models.get_version(reg, row["model"], same[0]["version"]) if same else None


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A record as the API answers it."""
    keys = ("id", "user", "model", "version", "run_id", "env", "action", "deployed_at")
    return {k: row[k] for k in keys} | {"model_sha256": row.get("model_sha256")}
