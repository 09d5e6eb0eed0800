"""Which environment variables of a run name data on this machine that a runtime must hand over.

A value is a data path when it names an existing file or folder by an absolute path, or by a
relative path (from the project folder) that leads outside the project. Relative paths inside
the project need nothing: every runtime gives the run the project folder as its working
directory. What a runtime does with the rest is its own business (the process runtime reads
them where they are; the Docker runtime mounts them read-only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def env_data_paths(env: Mapping[str, str], project_root: Path) -> dict[str, Path]:
    """Variable -> absolute host path, for the values of `env` that are data paths (see above)."""
    root = project_root.resolve()
    found: dict[str, Path] = {}
    for name, value in env.items():
        if not value or "\n" in value or "\0" in value or "://" in value:
            continue
        raw = Path(value).expanduser()
        try:
            path = (raw if raw.is_absolute() else root / raw).resolve()
            exists = path.exists()
        except (OSError, RuntimeError):  # unreadable, or a symlink loop
            continue
        if not exists or path == Path(path.anchor):
            continue
        if raw.is_absolute() or not path.is_relative_to(root):
            found[name] = path
    return found
