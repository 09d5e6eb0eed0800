"""API keys for deployments: `mllib keys create` (the secret is shown only then, only its hash is
stored; the format is mllib.serving.apikeys), `list`, `revoke` (servers refuse a revoked key
within [keys] refresh_s). Servers check keys per request with server/keycheck.py.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

from mllib.errors import NotFoundError, PolicyError, UsageError
from mllib.registry.db import Registry
from mllib.serving import audit
from mllib.serving.apikeys import PREFIX, hash_secret
from mllib.serving.clock import Clock, iso
from mllib.serving.control.settings import ENVS, KeySettings


@dataclass(frozen=True)
class NewKey:
    id: str
    env: str
    token: str  # shown once, never stored
    rps: float
    burst: float


def create_key(
    reg: Registry,
    clock: Clock,
    settings: KeySettings,
    *,
    env: str,
    user: str,
    rps: float | None = None,
    burst: float | None = None,
    name: str | None = None,
    admin: bool = False,
    admins: list[str] | None = None,
) -> NewKey:
    """Make a key for `env`; the returned token is the only time its secret exists in clear.
    An admin key may also force a rollout's variant (X-Mllib-Variant); when `admins` ([deploy]
    admins) names anyone, only they may make one."""
    if admin and admins and user not in admins:
        raise PolicyError(
            f"Refused: only {', '.join(admins)} may create admin keys",
            hint="[deploy] admins in mllib.toml lists them.",
        )
    if env not in ENVS:
        raise UsageError(f"Unknown environment {env!r}", hint="Choose --env staging or --env prod.")
    from mllib.ranges import BURST, RATE

    rate = RATE.check(settings.default_rps if rps is None else rps, "--rps")
    size = BURST.check(
        max(1.0, math.ceil(rate * settings.burst_s)) if burst is None else burst, "--burst"
    )
    key_id = secrets.token_hex(5)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    with reg.transaction():
        reg.db["api_keys"].insert(
            {
                "id": key_id,
                "env": env,
                "name": name,
                "salt": salt,
                "hash": hash_secret(salt, secret),
                "rps": float(rate),
                "burst": float(size),
                "created_at": iso(clock.time()),
                "created_by": user,
                "flags": 0,
                "admin": int(admin),
            }
        )
        audit.record(
            reg,
            clock,
            user=user,
            action="key_create",
            result="ok",
            env=env,
            key_id=key_id,
            detail={"rps": rate, "burst": size, "name": name, "admin": admin or None},
        )
    return NewKey(key_id, env, f"{PREFIX}_{key_id}_{secret}", float(rate), float(size))


def list_keys(reg: Registry, env: str | None = None) -> list[dict[str, Any]]:
    """Keys (never their hashes), newest first."""
    sql = (
        "SELECT id, env, name, rps, burst, admin, created_at, created_by, revoked_at,"
        " revoked_by, flagged_at, flags FROM api_keys"
    )
    args: tuple = ()
    if env:
        sql += " WHERE env = ?"
        args = (env,)
    rows = reg.query(sql + " ORDER BY created_at DESC", args)
    for row in rows:
        row["state"] = "revoked" if row["revoked_at"] else "active"
        row["admin"] = bool(row["admin"])
    return rows


def revoke_key(reg: Registry, clock: Clock, key_id: str, *, user: str) -> dict[str, Any]:
    """Revoke a key; servers refuse it within [keys] refresh_s."""
    key_id = key_id.removeprefix(f"{PREFIX}_").split("_")[0]
    with reg.transaction():
        rows = reg.query("SELECT id, env, revoked_at FROM api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFoundError(f"No API key {key_id!r}", hint="List keys with `mllib keys list`.")
        row = rows[0]
        if row["revoked_at"]:
            raise UsageError(f"Key {key_id} was already revoked at {row['revoked_at']}")
        reg.conn.execute(
            "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?",
            (iso(clock.time()), user, key_id),
        )
        audit.record(
            reg, clock, user=user, action="key_revoke", result="ok", env=row["env"], key_id=key_id
        )
    return {**row, "revoked_at": iso(clock.time())}
