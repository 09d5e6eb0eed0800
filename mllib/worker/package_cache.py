"""What an environment has installed, read once per environment rather than once per run.

Reading every installed distribution's metadata (`importlib.metadata`) costs a worker ~100 ms
of CPU, the largest part of a short run's own cost. The answer depends only on the
distributions Python finds on `sys.path`, so it is kept in the environment cache
(`packages/<hash of sys.prefix, the interpreter and MLLIB_RUNTIME_ID>.json` in `MLLIB_ENV_CACHE`,
where the venv runtime keeps its venvs; the Docker runtime mounts that folder into its
containers, so the runs of one image read it once between them, not once per container) with
a fingerprint of those distributions: for every `sys.path` entry that holds any, its path and the
names of its `*.dist-info`, `*.egg-info` and `*.egg` entries (a name carries its version) with
their inode and mtime. Installing, removing or upgrading a package changes the fingerprint, and
the next run reads the metadata again; an entry holding none (the model's folder, which the
worker puts on sys.path while the fingerprint is taken on another thread, or a run's working
directory) does not count, so runs of one environment agree. Computing it is a listing of each
folder (~1 ms).

The file is written whole (a temporary file replaces it), so concurrent workers read the old
record or the new, never half of one; one that cannot be read or written is read again from
the metadata, never an error.

>>> packages = cached_packages(installed_packages)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mllib.filemodes import private_dir, write_private
from mllib.userdirs import packages_cache_dir

RECIPE = "1"  # bump when what a record holds changes
DISTRIBUTION_SUFFIXES = (".dist-info", ".egg-info", ".egg")


def cached_packages(read: Callable[[], dict[str, str]]) -> dict[str, str]:
    """The installed packages (name -> version): the cached record when the environment's
    distributions are unchanged since it was written, else `read()`, recorded for next time."""
    mark = fingerprint()
    try:
        path = record_path()
    except ImportError:  # a worker in an image or venv without platformdirs: no cache there
        return read()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("fingerprint") == mark and isinstance(record.get("packages"), dict):
            return dict(record["packages"])
    except (OSError, ValueError, AttributeError):
        pass  # none yet, or damaged: read it again below
    packages = read()
    try:
        private_dir(path.parent)
        record = json.dumps({"fingerprint": mark, "packages": packages})
        write_private(path, record, durable=False)  # a cache: a power cut costs a new read
    except OSError:
        pass  # a read-only or full cache: the next run reads the metadata again
    return packages


def record_path() -> Path:
    """Where this interpreter's environment keeps its record: one file per (sys.prefix,
    interpreter, runtime id: a Docker image's tag, a venv's key), replaced when the environment
    changes, so the folder does not grow with runs."""
    runtime_id = os.environ.get("MLLIB_RUNTIME_ID", "")
    who = f"{sys.prefix}\0{sys.executable}\0{sys.version}\0{runtime_id}"
    name = hashlib.sha256(who.encode()).hexdigest()[:24]
    return packages_cache_dir() / f"{name}.json"


def fingerprint() -> str:
    """A hash of the distributions on sys.path (see the module docstring): equal while nothing is
    installed, removed or upgraded; different after."""
    digest = hashlib.sha256(f"{RECIPE}\0{sys.prefix}\0{sys.version}\n".encode())
    # A copy: the worker puts the model's folder first on sys.path while this runs on its
    # environment thread. Only entries holding distributions count (in their order): the model's
    # folder, the working directory and the like change from run to run and install nothing.
    for entry in list(sys.path):
        try:
            with os.scandir(entry or ".") as listing:
                found = [
                    (item.name, item.inode(), item.stat(follow_symlinks=False).st_mtime_ns)
                    for item in listing
                    if item.name.endswith(DISTRIBUTION_SUFFIXES)
                ]
        except NotADirectoryError:  # a zip archive: the archive itself stands for what it holds
            info = os.stat(entry)
            found = [("", info.st_ino, info.st_mtime_ns)]
        except OSError:
            continue  # absent or unreadable: Python finds nothing there either
        if found:
            digest.update(f"{entry}\n".encode())
        for name, inode, mtime in sorted(found):
            digest.update(f"{name}\0{inode}\0{mtime}\n".encode())
    return digest.hexdigest()
