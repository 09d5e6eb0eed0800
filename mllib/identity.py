"""Who is acting: the OS user, until mllib has accounts (runs, deployments and containers record it)."""

from __future__ import annotations

import getpass
import os


def current_user() -> str:
    """The OS user's name (its uid when the system has no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
