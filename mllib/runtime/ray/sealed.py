"""A node's read-only copies of the data packages Ray unpacked, rebuilt when a run touched them.

Ray unpacks a job's py_modules package once per node and hands the same folder to every later
job of that package, so a run that wrote into it (root writes through read-only files) would
change what the next run reads. A shipped run reads a copy instead, as a local run reads a
materialised dataset (mllib.datasets.materialize): files 0444, folders 0555, and a stamp of each
file's size and mtime, checked with one stat per file before each run and rebuilt from Ray's
untouched folder when anything differs. Copies live beside Ray's packages and go when Ray has
removed theirs.

>>> sealed_copy(Path("/tmp/ray/.../py_modules_files/_ray_pkg_ab12"))  # doctest: +SKIP
PosixPath('/tmp/ray/.../py_modules_files/mllib-sealed/_ray_pkg_ab12')
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from mllib.locks import file_lock

SEALED = "mllib-sealed"  # beside Ray's unpacked packages
FILE_MODE, DIR_MODE = 0o444, 0o555
LOCK_TIMEOUT_S = 3600.0  # another job of this node copying a large package


def sealed_copy(package: Path) -> Path:
    """The read-only copy of Ray's unpacked `package`, made or rebuilt if it is not intact."""
    cache = package.parent / SEALED
    target, stamp = cache / package.name, cache / f"{package.name}.ok"
    if _intact(target, stamp):
        return target
    cache.mkdir(exist_ok=True)
    _forget_removed(cache, package.parent)
    with file_lock(cache / f"{package.name}.lock", timeout=LOCK_TIMEOUT_S, what="a data copy"):
        if _intact(target, stamp):
            return target
        stamp.unlink(missing_ok=True)
        _remove(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{package.name}-", dir=cache))
        try:
            shutil.copytree(package, tmp, symlinks=True, dirs_exist_ok=True)
            listing = _seal(tmp)
            os.rename(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
        stamp.write_text(json.dumps(listing), encoding="utf-8")
    return target


def _seal(root: Path) -> dict[str, list[int]]:
    """Make `root`'s files and folders read-only; each file's size and mtime."""
    listing = {}
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            os.chmod(path, FILE_MODE)
            st = path.stat()
            listing[path.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
        os.chmod(dirpath, DIR_MODE)
    return listing


def _intact(target: Path, stamp: Path) -> bool:
    try:
        listing = json.loads(stamp.read_text(encoding="utf-8"))
        for rel, (size, mtime_ns) in listing.items():
            st = os.stat(target / rel, follow_symlinks=False)
            if (
                not stat.S_ISREG(st.st_mode)
                or (st.st_size, st.st_mtime_ns) != (size, mtime_ns)
                or st.st_mode & 0o222
            ):
                return False
    except (OSError, ValueError, TypeError):
        return False
    return True


def _forget_removed(cache: Path, packages: Path) -> None:
    """Remove the copies of packages Ray has removed (it deletes those no job uses)."""
    for entry in cache.iterdir():
        name = entry.name.removesuffix(".ok").removesuffix(".lock")
        if entry.name.startswith(".") or (packages / name).exists():
            continue
        if entry.is_dir():
            _remove(entry)
        else:
            entry.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if not path.exists():
        return
    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(path, ignore_errors=True)
