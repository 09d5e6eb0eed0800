"""API keys for deployments: created once (the secret is shown only then), stored hashed, checked
per request in constant time, revoked at any time.

A key reads `mlk_<id>_<secret>`: the id is public (lists, logs, audit), the secret is 256 random
bits. Only sha256(salt + secret) is stored. A slow password hash (bcrypt, argon2) protects
low-entropy passwords against guessing; a 256-bit random secret cannot be guessed, and the check
runs on every request, so a fast cryptographic hash is the right tool here.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.errors import NotFoundError, UsageError
from mllib.registry.db import Registry
from mllib.serving import audit
from mllib.serving.clock import Clock, iso
from mllib.serving.settings import ENVS, KeySettings

PREFIX = "mlk"


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


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
) -> NewKey:
    """Make a key for `env`; the returned token is the only time its secret exists in clear."""
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
            detail={"rps": rate, "burst": size, "name": name},
        )
    return NewKey(key_id, env, f"{PREFIX}_{key_id}_{secret}", float(rate), float(size))


def list_keys(reg: Registry, env: str | None = None) -> list[dict[str, Any]]:
    """Keys (never their hashes), newest first."""
    sql = (
        "SELECT id, env, name, rps, burst, created_at, created_by, revoked_at, revoked_by,"
        " flagged_at, flags FROM api_keys"
    )
    args: tuple = ()
    if env:
        sql += " WHERE env = ?"
        args = (env,)
    rows = reg.query(sql + " ORDER BY created_at DESC", args)
    for row in rows:
        row["state"] = "revoked" if row["revoked_at"] else "active"
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


def flag_key(registry_path: Path, key_id: str, env: str, detail: dict[str, Any]) -> None:
    """Record in the audit log that a key burst past its rate limit (called by a server)."""
    from mllib.serving.clock import SystemClock

    reg = Registry.open(registry_path)
    try:
        clock = SystemClock()
        with reg.transaction():
            reg.conn.execute(
                "UPDATE api_keys SET flagged_at = ?, flags = COALESCE(flags, 0) + 1 WHERE id = ?",
                (iso(clock.time()), key_id),
            )
            audit.record(
                reg,
                clock,
                user=None,
                action="key_burst",
                result="flagged",
                env=env,
                key_id=key_id,
                reason="burst past its rate limit",
                detail=detail,
            )
    finally:
        reg.close()


@dataclass(frozen=True)
class KnownKey:
    number: int  # registry row number: the key's rate-limit slot
    id: str
    salt: str
    hash: str
    rps: float
    burst: float
    revoked: bool


@dataclass(frozen=True)
class Verdict:
    key: KnownKey | None
    error: str | None = None


class KeyVerifier:
    """Checks `Authorization: Bearer KEY` against the registry's keys for one environment.

    A background thread re-reads the keys every `refresh_s` (so a revoke lands within it) and
    the check itself only reads memory; an id not seen yet is looked up at once, so a key works
    the moment it is created, and ids that do not exist are remembered for `refresh_s`.
    """

    _COLUMNS = "SELECT rowid, id, salt, hash, rps, burst, revoked_at FROM api_keys WHERE env = ?"

    def __init__(self, registry_path: Path, env: str, refresh_s: float) -> None:
        self.registry_path = registry_path
        self.env = env
        self.refresh_s = refresh_s
        self._keys: dict[str, KnownKey] = {}
        self._missing: dict[str, float] = {}
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.registry_path, timeout=5)

    @staticmethod
    def _key(row: tuple) -> KnownKey:
        return KnownKey(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))

    def refresh(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(self._COLUMNS, (self.env,)).fetchall()
        self._keys = {r[1]: self._key(r) for r in rows}

    def start(self) -> None:
        """Load the keys, then keep them fresh from a daemon thread (in the process using them)."""
        import threading

        self._conn = self._connect()
        self.refresh(self._conn)
        threading.Thread(target=self._refresher, name="mllib-keys", daemon=True).start()

    def _refresher(self) -> None:
        conn = self._connect()
        while True:
            time.sleep(self.refresh_s)
            try:
                self.refresh(conn)
            except sqlite3.Error:
                continue  # keep the keys known so far; try again next time

    def _lookup(self, key_id: str) -> KnownKey | None:
        key = self._keys.get(key_id)
        if key is not None:
            return key
        now = time.monotonic()
        if self._missing.get(key_id, -1e18) > now:
            return None
        if self._conn is None:
            self._conn = self._connect()
        rows = self._conn.execute(self._COLUMNS + " AND id = ?", (self.env, key_id)).fetchall()
        if not rows:
            if len(self._missing) > 10_000:
                self._missing.clear()
            self._missing[key_id] = now + self.refresh_s
            return None
        key = self._keys[key_id] = self._key(rows[0])
        return key

    def verify(self, authorization: str | None) -> Verdict:
        if not authorization:
            return Verdict(None, "missing")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Verdict(None, "malformed")
        parts = split_token(token.strip())
        if parts is None:
            return Verdict(None, "malformed")
        key_id, secret = parts
        try:
            key = self._lookup(key_id)
        except sqlite3.Error:
            return Verdict(None, "unavailable")
        if key is None:
            return Verdict(None, "unknown")
        if not hmac.compare_digest(hash_secret(key.salt, secret), key.hash):
            return Verdict(None, "unknown")
        if key.revoked:
            return Verdict(key, "revoked")
        return Verdict(key)
