"""Where mllib keeps a user's own state (agents, known host keys, locks): `MLLIB_HOME`, else
~/.mllib."""

from __future__ import annotations

import os
from pathlib import Path


def mllib_home() -> Path:
    """Per-user state: `MLLIB_HOME`, else ~/.mllib."""
    return Path(os.environ.get("MLLIB_HOME") or Path.home() / ".mllib").expanduser()
