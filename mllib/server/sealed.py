"""Secrets the team server keeps between runs (a schedule's `.env.remote` values and the variables
its model's params read), sealed with Fernet under a key in the server's home: the database holds
only ciphertext, and a copy of it (a backup, a PostgreSQL replica) discloses nothing without the
key. A submission's own secrets need no sealing: its job holds them only until the run ends
(mllib.queue.jobs.done), and each run of a schedule gets them that way.

The key (`secrets.key`, 0600) is made at first use; servers sharing one PostgreSQL database need
the same key file.

>>> token = seal(home, {"API_TOKEN": "t0k"})  # doctest: +SKIP
>>> unseal(home, token)  # doctest: +SKIP
{'API_TOKEN': 't0k'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.errors import MllibError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from mllib.server.settings import ServerHome

KEY_FILE = "secrets.key"


def seal(home: ServerHome, values: dict[str, str]) -> str | None:
    """`values` as ciphertext (None when there are none)."""
    if not values:
        return None
    return _fernet(home).encrypt(json.dumps(values).encode()).decode()


def unseal(home: ServerHome, token: str | None) -> dict[str, str]:
    """What `seal` sealed; an error naming the key file when it is not the key that sealed it."""
    if not token:
        return {}
    from cryptography.fernet import InvalidToken

    try:
        values: dict[str, str] = json.loads(_fernet(home).decrypt(token.encode()))
    except InvalidToken:
        raise MllibError(
            f"The schedule's secrets were sealed with another key than {home.root / KEY_FILE}",
            hint="Restore that key file, or add the schedule again.",
        ) from None
    return values


def _fernet(home: ServerHome) -> Fernet:
    from cryptography.fernet import Fernet

    path = Path(home.root) / KEY_FILE
    if not path.exists():  # written aside, then linked: a reader never sees half a key
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:  # another server made it first: both use that one
            pass
        finally:
            draft.unlink()
    return Fernet(path.read_bytes().strip())
