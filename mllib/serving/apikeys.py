"""The API key format both halves agree on: `mllib keys create` makes keys, servers check them.

A key reads `mlk_<id>_<secret>`: the id is public (lists, logs, audit), the secret is 256 random
bits. Only sha256(salt + secret) is stored. A slow password hash (bcrypt, argon2) protects
low-entropy passwords against guessing; a 256-bit random secret cannot be guessed, and the check
runs on every request, so a fast cryptographic hash is the right tool here.

>>> split_token("mlk_0a1b2c3d4e_s3cr3t")
('0a1b2c3d4e', 's3cr3t')
"""

from __future__ import annotations

import hashlib

PREFIX = "mlk"


def hash_secret(salt: str, secret: str) -> str:
    """What the registry stores of a key's secret: sha256(salt + secret), hex."""
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
