"""The serving feature's registry tables: deployments, the audit log, API keys, load tests and the
state of the deploy rules (per-user budget, cooldowns). Numbered migrations, never edited once released.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils


@cache
def migrations() -> sqlite_utils.Migrations:
    """This feature's migration set (built on first use, when a registry is opened)."""
    migrations = new_set("mllib.serving")

    @migrations(name="0001_deployments_audit_keys_loadtests")
    def initial(db: sqlite_utils.Database) -> None:
        db["deployments"].create(
            {
                "id": str,
                "env": str,
                "action": str,  # deploy or rollback
                "state": str,  # starting, live, stopped, failed, crashed
                "model": str,
                "version": int,
                "run_id": str,
                "model_sha256": str,
                "code_hash": str,
                "artifact": str,  # model_sha256:code_hash, what "the same artifact" means
                "host": str,
                "port": int,
                "url": str,
                "workers": int,
                "api_servers": int,
                "pid": int,
                "pid_ctime": float,
                "dir": str,
                "log_path": str,
                "user": str,
                "forced": int,
                "reason": str,
                "error": str,
                "previous_id": str,  # the deployment it replaced
                "replaced_by": str,
                "created_at": str,
                "live_at": str,
                "stopped_at": str,
            },
            pk="id",
            not_null={"env", "state", "model", "run_id", "artifact", "created_at"},
        )
        db["deployments"].create_index(["env", "created_at"])
        db["deployments"].create_index(["state"])
        db["audit_log"].create(
            {
                "id": int,
                "ts": float,  # seconds since the epoch, from the deploy rules' clock
                "at": str,
                "user": str,
                "env": str,
                "action": str,  # deploy, rollback, stop, loadtest, key_create, key_revoke, key_burst
                "result": str,  # ok, refused, forced, failed, noop, flagged
                "model": str,
                "version": int,
                "deployment_id": str,
                "key_id": str,
                "reason": str,
                "detail": str,  # JSON
            },
            pk="id",
            not_null={"ts", "at", "action", "result"},
        )
        db["audit_log"].create_index(["env", "ts"])
        db["api_keys"].create(
            {
                "id": str,  # public part of the key, shown in lists and logs
                "env": str,
                "name": str,
                "salt": str,
                "hash": str,  # sha256(salt + secret), hex
                "rps": float,
                "burst": float,
                "created_at": str,
                "created_by": str,
                "revoked_at": str,
                "revoked_by": str,
                "flagged_at": str,
                "flags": int,
            },
            pk="id",
            not_null={"env", "salt", "hash", "rps", "burst", "created_at"},
        )
        db["loadtests"].create(
            {
                "id": str,
                "env": str,
                "deployment_id": str,
                "model": str,
                "version": int,
                "artifact": str,
                "user": str,
                "ts": float,  # when it ended, from the deploy rules' clock
                "started_at": str,
                "ended_at": str,
                "mode": str,  # concurrency or rps
                "concurrency": int,
                "target_rps": float,
                "duration_s": float,
                "requests": int,
                "errors": int,
                "rps": float,
                "p50_ms": float,
                "p95_ms": float,
                "p99_ms": float,
                "max_ms": float,
                "error_rate": float,
                "passed": int,
                "failed_checks": str,  # JSON list of what did not pass
                "statuses": str,  # JSON: status code -> count
                "histogram": str,  # JSON: [[upper_ms, count], ...]
            },
            pk="id",
            not_null={"env", "artifact", "ts", "passed"},
        )
        db["loadtests"].create_index(["artifact", "env", "ts"])
        db["deploy_budget"].create({"user": str, "tokens": float, "updated": float}, pk="user")
        db["deploy_strikes"].create(
            {"user": str, "model": str, "level": int, "last_strike": float, "until": float},
            pk=("user", "model"),
        )

    @migrations(name="0002_replicas_admin_keys")
    def replicas(db: sqlite_utils.Database) -> None:
        db["api_keys"].add_column("admin", int, not_null_default=0)
        db["deployments"].add_column("min_replicas", int)
        db["deployments"].add_column("max_replicas", int)

    @migrations(name="0003_loadtests_server_figures")
    def loadtest_figures(db: sqlite_utils.Database) -> None:
        table = db["loadtests"]
        for column, kind in (
            ("rate_from", float),
            ("skipped", int),
            ("server", str),  # JSON: the server's own requests, errors, p50/p99
            ("client", str),  # JSON: load workers, their CPU share, whether they were the limit
            ("judged_on", str),  # client or server
        ):
            table.add_column(column, kind)

    @migrations(name="0004_deployments_reported")
    def reported(db: sqlite_utils.Database) -> None:
        # when the team server was told this deployment went live (NULL: not yet; those that
        # went live before reach it with the next `mllib deploy` command)
        db["deployments"].add_column("reported_at", str)

    @migrations(name="0005_deployments_stop_reported")
    def stop_reported(db: sqlite_utils.Database) -> None:
        # when the team server was told `mllib deploy stop` stopped it (NULL: not yet); the
        # stops made before the server was told of stops are not sent again
        db["deployments"].add_column("stop_reported_at", str)
        db.execute("UPDATE deployments SET stop_reported_at = stopped_at")

    return migrations
