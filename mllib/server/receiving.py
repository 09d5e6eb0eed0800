"""Blobs and dataset chunks arriving over HTTP: digests checked, a body read up to the server's
`max_upload_mb` and checked against the sha256 it is sent as, before anything is stored."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from mllib.errors import UsageError


class BlobTooLarge(UsageError):
    """A blob over the server's `max_upload_mb` (413)."""


def check_shas(shas: list[str]) -> None:
    """A usage error (400) for the first text that is not a sha256 hex digest."""
    bad = [s for s in shas if not is_sha256(s)]
    if bad:
        raise UsageError(f"Not a sha256: {bad[0][:80]!r}")


def is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


async def read_blob(body: AsyncIterator[bytes], sha256: str, limit_mb: float) -> bytes:
    """A request's body (`request.stream()`), which must hash to `sha256` (400) and fit in
    `limit_mb` (413)."""
    check_shas([sha256])
    limit = int(limit_mb * 1e6)
    data = bytearray()
    async for chunk in body:
        data += chunk
        if len(data) > limit:
            raise BlobTooLarge(f"The blob is over the server's {limit_mb:g} MB")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UsageError("The blob's content does not match its sha256 (it arrived damaged)")
    return bytes(data)
