"""Tokens checked a moment ago, so a busy client's requests are not each looked up in the
database: keyed by sha256 of the token (the token itself is never kept), each entry good for
`ttl_s`. A token revoked through this server is dropped at once (`drop`); one revoked, or a user
disabled, by another process (`mllib server users disable`) is refused within `ttl_s`.

>>> cache = TokenCache(ttl_s=1.0, check=lambda token: User("ana"))
>>> cache.put("mlt_ab_secret", User("ana"))
>>> cache.get("mlt_ab_secret").name
'ana'
>>> await cache.user("mlt_cd_other")  # doctest: +SKIP
User(name='ana', ...)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

from mllib.server.accounts import User

MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, ttl_s: float, check: Callable[[str], User]) -> None:
        self.ttl_s, self.check = ttl_s, check  # check: the database's answer, or AuthError
        self._users: dict[str, tuple[User, float]] = {}  # sha256(token) -> user, until when

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> User | None:
        """The user `token` was found to belong to less than `ttl_s` ago, else None."""
        known = self._users.get(self._key(token))
        if known is None or known[1] <= time.monotonic():
            return None
        return known[0]

    async def user(self, token: str) -> User:
        """The user `token` belongs to: from the cache, else checked (on a thread of the
        event loop's executor, as it reads the database) and kept; AuthError when it is not
        valid."""
        found = self.get(token)
        if found is None:
            found = await asyncio.to_thread(self.check, token)
            self.put(token, found)
        return found

    def put(self, token: str, user: User) -> None:
        if len(self._users) >= MAX_ENTRIES:
            self._users.clear()
        self._users[self._key(token)] = (user, time.monotonic() + self.ttl_s)

    def drop(self, token: str) -> None:
        self._users.pop(self._key(token), None)
