"""Where mllib keeps a user's own state (agents, known host keys, locks): `MLLIB_HOME`, else
~/.mllib; and its cache of environments (project venvs, what each environment has installed)."""

from __future__ import annotations

import os
from pathlib import Path


def mllib_home() -> Path:
    """Per-user state: `MLLIB_HOME`, else ~/.mllib."""
    return Path(os.environ.get("MLLIB_HOME") or Path.home() / ".mllib").expanduser()


def env_cache_dir() -> Path:
    """The cache of environments: `MLLIB_ENV_CACHE`, else the user's cache folder
    ($XDG_CACHE_HOME or ~/.cache)/mllib/envs. Shared by the venv runtime and the worker."""
    if os.environ.get("MLLIB_ENV_CACHE"):
        return Path(os.environ["MLLIB_ENV_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mllib" / "envs"
