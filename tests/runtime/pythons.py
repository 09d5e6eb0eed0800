"""Pythons of this host other than the one running the tests (pyenv's, /usr/bin's)."""

from __future__ import annotations

import glob
import os
import platform
import re
import subprocess


def other_minor_python() -> str | None:
    """The version of an installed Python of another minor version than this one (3.11+,
    as mllib needs), looked for where they are usually installed; None when this host has none."""
    here = platform.python_version_tuple()[:2]
    patterns = ["/usr/bin/python3.*", "/usr/local/bin/python3.*",
                os.path.expanduser("~/.pyenv/versions/*/bin/python3.*")]  # fmt: skip
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        if not re.fullmatch(r"python3\.\d+", os.path.basename(path)):
            continue
        probe = subprocess.run([path, "-c", "import platform; print(platform.python_version())"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
        version = probe.stdout.strip()
        major, minor = [*version.split("."), "0", "0"][:2]
        if (
            probe.returncode == 0
            and [major, minor] != list(here)
            and (int(major), int(minor)) >= (3, 11)
        ):
            return version
    return None
