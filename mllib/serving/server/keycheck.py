"""A server's side of API keys: checking `Authorization: Bearer KEY` on every request against the
registry's keys for the server's environment, and flagging a key that bursts past its rate limit
in the audit log. Keys are made and revoked by the control plane (control/keys.py); their format
is mllib.serving.apikeys.
"""

from __future__ import annotations

import hmac
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.registry.db import Registry
from mllib.serving import audit
from mllib.serving.apikeys import hash_secret, split_token
from mllib.serving.clock import SystemClock, iso


def flag_key(registry_path: Path, key_id: str, env: str, detail: dict[str, Any]) -> None:
    """Record in the audit log that a key burst past its rate limit."""
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


PASSED_MAX = 10_000  # headers that passed remembered at most, between two re-reads


@dataclass(frozen=True)
class KnownKey:
    number: int  # registry row number: the key's rate-limit slot
    id: str
    salt: str
    hash: str
    rps: float
    burst: float
    revoked: bool
    admin: bool = False  # may force a rollout's variant (X-Mllib-Variant)


@dataclass(frozen=True)
class Verdict:
    key: KnownKey | None
    error: str | None = None


class KeyVerifier:
    """Checks `Authorization: Bearer KEY` against the registry's keys for one environment.

    A background thread re-reads the keys every `refresh_s` (so a revoke lands within it) and
    the check itself only reads memory; an id not seen yet is looked up at once, so a key works
    the moment it is created, and ids that do not exist are remembered for `refresh_s`. A header
    that passed is remembered until the next re-read, so a caller's later requests cost one dict
    lookup, not a hash.
    """

    _COLUMNS = (
        "SELECT rowid, id, salt, hash, rps, burst, revoked_at, admin FROM api_keys WHERE env = ?"
    )

    def __init__(self, registry_path: Path, env: str, refresh_s: float) -> None:
        self.registry_path = registry_path
        self.env = env
        self.refresh_s = refresh_s
        self._keys: dict[str, KnownKey] = {}
        self._missing: dict[str, float] = {}
        self._passed: dict[str, Verdict] = {}  # Authorization headers that passed, till a re-read
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.registry_path, timeout=5)

    @staticmethod
    def _key(row: tuple) -> KnownKey:
        return KnownKey(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), bool(row[7]))

    def refresh(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(self._COLUMNS, (self.env,)).fetchall()
        self._keys = {r[1]: self._key(r) for r in rows}
        self._passed = {}  # checked afresh against what was just read (a revoke lands here)

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
        passed = self._passed  # taken first: a verdict on keys older than a re-read lands in
        found = passed.get(authorization)  # the dict that re-read replaced, never in the new one
        if found is not None:
            return found
        verdict = self._verify(authorization)
        if verdict.error is None and len(passed) < PASSED_MAX:
            passed[authorization] = verdict
        return verdict

    def _verify(self, authorization: str) -> Verdict:
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
