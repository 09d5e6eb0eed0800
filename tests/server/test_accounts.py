"""Users and tokens on SQLite and PostgreSQL: tokens stored hashed, expiring, revocable; a
disabled user's tokens refused; no message ever holds a token."""

from __future__ import annotations

import time

import pytest

from mllib.errors import UsageError
from mllib.plugins import SERVER_MIGRATIONS
from mllib.registry import Registry
from mllib.server import accounts


@pytest.fixture
def reg(database: str):
    registry = Registry.connect(database, SERVER_MIGRATIONS)
    yield registry
    registry.close()


def test_a_token_logs_its_user_in_and_only_its_hash_is_stored(reg) -> None:
    token = accounts.add_user(reg, "ana", admin=True)
    assert token.startswith("mlt_") and len(token) > 40
    user = accounts.authenticate(reg, token)
    assert (user.name, user.admin) == ("ana", True)
    stored = reg.query("SELECT * FROM tokens")
    assert len(stored) == 1 and token.split("_", 2)[2] not in str(stored)
    with pytest.raises(UsageError):
        accounts.add_user(reg, "ana")
    with pytest.raises(UsageError):
        accounts.add_user(reg, "Bad Name")


@pytest.mark.parametrize("case", ["malformed", "wrong secret", "unknown id"])
def test_bad_tokens_are_refused_without_repeating_them(reg, case) -> None:
    token = accounts.add_user(reg, "ana")
    bad = {
        "malformed": "hello",
        "wrong secret": token[:-4] + "AAAA",
        "unknown id": "mlt_0000000000_" + token.split("_", 2)[2],
    }[case]
    with pytest.raises(accounts.AuthError) as refused:
        accounts.authenticate(reg, bad)
    assert bad not in str(refused.value) and token not in str(refused.value)


def test_expired_revoked_and_disabled_are_refused(reg) -> None:
    short = accounts.add_user(reg, "ana", expires_in_s=0.05)
    time.sleep(0.1)
    with pytest.raises(accounts.AuthError, match="expired"):
        accounts.authenticate(reg, short)
    token = accounts.issue_token(reg, "ana")
    accounts.revoke_token(reg, token)
    with pytest.raises(accounts.AuthError, match="revoked"):
        accounts.authenticate(reg, token)
    token = accounts.issue_token(reg, "ana")
    accounts.set_disabled(reg, "ana")
    with pytest.raises(accounts.AuthError, match="disabled"):
        accounts.authenticate(reg, token)
    accounts.set_disabled(reg, "ana", False)
    assert accounts.authenticate(reg, token).name == "ana"
    assert [(u["name"], u["tokens"]) for u in accounts.list_users(reg)] == [("ana", 1)]
