"""People of a team server and their login tokens, in the server's database.

A token reads `mlt_<id>_<secret>`: the id is public (lists, logs), the secret 256 random bits.
Only sha256(secret) is stored and compared in constant time: a slow password hash guards
guessable passwords, and a 256-bit random secret cannot be guessed, while the check runs on
every request. Tokens may expire and be revoked; disabling a user refuses all of theirs.

>>> token = add_user(reg, "ana", admin=False)  # doctest: +SKIP
>>> authenticate(reg, token).name  # doctest: +SKIP
'ana'
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mllib.errors import MllibError, NotFoundError, UsageError
from mllib.registry import Registry
from mllib.registry.runs import now
from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils

PREFIX = "mlt"
NAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,62}$")


class AuthError(MllibError):
    """A request without a valid token: missing, malformed, unknown, expired, revoked or of a
    disabled user. The message never holds the token."""


@dataclass(frozen=True)
class User:
    name: str
    admin: bool = False
    disabled: bool = False
    max_running: int | None = None
    max_queued: int | None = None
    created_at: str = ""


@cache
def migrations() -> sqlite_utils.Migrations:
    """Users and tokens (a team server's database applies this set; mllib.plugins)."""
    migrations_ = new_set("mllib.server.accounts")

    @migrations_(name="0001_users_tokens")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("users").create(
            {
                "name": str,
                "admin": int,
                "disabled": int,
                "max_running": int,  # NULL: the server's default quota
                "max_queued": int,
                "created_at": str,
            },
            pk="name",
            not_null={"admin", "disabled", "created_at"},
        )
        db.table("tokens").create(
            {
                "id": str,
                "user": str,
                "hash": str,  # sha256 of the secret, hex
                "created_at": str,
                "expires_at": float,  # seconds since the epoch; NULL: never
                "revoked_at": str,
                "last_used_at": str,
            },
            pk="id",
            not_null={"user", "hash", "created_at"},
            foreign_keys=[("user", "users", "name")],
        )

    return migrations_


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"Invalid user name {name!r}",
            hint="Use lower-case letters, digits, '_', '.' and '-', starting with a letter.",
        )
    return name


def add_user(
    reg: Registry,
    name: str,
    *,
    admin: bool = False,
    max_running: int | None = None,
    max_queued: int | None = None,
    expires_in_s: float | None = None,
) -> str:
    """Create user `name` and return a login token for them (shown once: only its hash stays)."""
    check_name(name)
    with reg.transaction():
        if reg.query("SELECT name FROM users WHERE name = ?", (name,)):
            raise UsageError(
                f"User {name!r} already exists",
                hint=f"Give them a new token with `mllib server users token {name}`.",
            )
        reg.db.table("users").insert(
            {
                "name": name,
                "admin": int(admin),
                "disabled": 0,
                "max_running": max_running,
                "max_queued": max_queued,
                "created_at": now(),
            }
        )
        return issue_token(reg, name, expires_in_s=expires_in_s)


def issue_token(reg: Registry, name: str, *, expires_in_s: float | None = None) -> str:
    """A new login token for an existing user (their other tokens stay valid)."""
    get_user(reg, name)
    token_id, secret = secrets.token_hex(5), secrets.token_urlsafe(32)
    with reg.transaction():
        reg.db.table("tokens").insert(
            {
                "id": token_id,
                "user": name,
                "hash": _hash(secret),
                "created_at": now(),
                "expires_at": None if expires_in_s is None else time.time() + expires_in_s,
            }
        )
    return f"{PREFIX}_{token_id}_{secret}"


def lock_users(reg: Registry, names: Iterable[str]) -> None:
    """PostgreSQL: hold these users' rows until the transaction ends, taken in name order (two
    transactions locking some of the same users never wait on each other in a cycle)."""
    reg.conn.execute(
        "SELECT name FROM users WHERE name = ANY(?) ORDER BY name FOR UPDATE", (sorted(names),)
    )


def get_user(reg: Registry, name: str) -> User:
    rows = reg.query("SELECT * FROM users WHERE name = ?", (name,))
    if not rows:
        raise NotFoundError(f"No user {name!r}", hint="List users with `mllib server users list`.")
    return _user(rows[0])


def _user(row: dict[str, Any]) -> User:
    return User(
        row["name"],
        bool(row["admin"]),
        bool(row["disabled"]),
        row["max_running"],
        row["max_queued"],
        row["created_at"],
    )


def list_users(reg: Registry) -> list[dict[str, Any]]:
    """Users with their tokens' count (live ones), for `mllib server users list`."""
    rows = reg.query(
        'SELECT u.*, (SELECT COUNT(*) FROM tokens t WHERE t."user" = u.name AND '
        "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)) AS tokens "
        "FROM users u ORDER BY u.name",
        (time.time(),),
    )
    return [{**_user(r).__dict__, "tokens": int(r["tokens"])} for r in rows]


def set_disabled(reg: Registry, name: str, disabled: bool = True) -> None:
    """Disable (or enable again) a user: a disabled user's tokens are all refused."""
    get_user(reg, name)
    with reg.transaction():
        reg.conn.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))


def revoke_tokens(reg: Registry, name: str) -> int:
    """Revoke every live token of `name` (`mllib logout` revokes its own); how many."""
    with reg.transaction():
        cursor = reg.conn.execute(
            'UPDATE tokens SET revoked_at = ? WHERE "user" = ? AND revoked_at IS NULL',
            (now(), name),
        )
        return int(cursor.rowcount)


def revoke_token(reg: Registry, token: str) -> None:
    """Revoke one token (the one a client logs out with)."""
    parts = _split(token)
    if parts is not None:
        with reg.transaction():
            reg.conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now(), parts[0]),
            )


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def authenticate(reg: Registry, token: str) -> User:
    """The user a token belongs to, or AuthError saying why not (without the token)."""
    parts = _split(token)
    if parts is None:
        raise AuthError("The token is malformed", hint="Log in again with `mllib login URL`.")
    rows = reg.query("SELECT * FROM tokens WHERE id = ?", (parts[0],))
    given = _hash(parts[1])
    # Compared in constant time, against a dummy when the id is unknown, so timing tells nothing.
    stored = rows[0]["hash"] if rows else "0" * 64
    if not hmac.compare_digest(given, stored) or not rows:
        raise AuthError("The token is not valid", hint="Log in again with `mllib login URL`.")
    row = rows[0]
    if row["revoked_at"]:
        raise AuthError("The token was revoked", hint="Ask an admin for a new one.")
    if row["expires_at"] is not None and row["expires_at"] < time.time():
        raise AuthError("The token has expired", hint="Ask an admin for a new one.")
    user = get_user(reg, row["user"])
    if user.disabled:
        raise AuthError(f"User {user.name} is disabled", hint="Ask an admin to enable you again.")
    return user
