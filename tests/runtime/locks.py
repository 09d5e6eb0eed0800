"""Locked requirements files made the way users make them: `uv pip compile --generate-hashes`
against the host's own package sources."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

from mllib.runtime.installer import choose_installer


def uv_lock(folder: Path, packages: list[str]) -> str:
    """A requirements file pinning `packages` at this machine's versions, with their hashes."""
    installer = choose_installer({**os.environ, "MLLIB_INSTALLER": "uv"})
    pins = "".join(f"{name}=={importlib.metadata.version(name)}\n" for name in packages)
    (folder / "in.txt").write_text(pins)
    try:
        compiled = subprocess.run(
            [installer.uv or "uv", "pip", "compile", "--generate-hashes", "--python-version",
             "3.11", *installer.options, "in.txt"],
            cwd=folder, env={**os.environ, **installer.environ}, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        (folder / "in.txt").unlink()
    assert compiled.returncode == 0, compiled.stderr
    return compiled.stdout
