"""What a local upload holds: the files under a path, checked before a byte is read.

Symlinks are followed only while they stay inside the folder being uploaded (one pointing
outside is an error, never a silent copy of /etc/passwd); pipes, sockets and devices are errors
(reading a FIFO would hang); names must be valid UTF-8 so the manifest can hold them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mllib.datasets.manifest import safe_relative
from mllib.errors import NotFoundError, UsageError


@dataclass(frozen=True)
class SourceFile:
    rel: str  # POSIX path inside the dataset
    path: Path  # where to read it
    size: int
    mtime_ns: int
    executable: bool


def scan(source: Path, skip: Iterable[Path] = ()) -> tuple[str, list[SourceFile]]:
    """("file", [one]) for a file, ("folder", files sorted by path) for a folder.

    Folders in `skip` (mllib's own state, when a project folder is uploaded) are left out.
    """
    from mllib.datasets.manifest import FILE, FOLDER

    if not source.exists():
        kind = "broken symlink" if source.is_symlink() else "file or folder"
        raise NotFoundError(f"No {kind} {str(source)!r} to upload")
    if source.is_dir():
        files = _walk(source.resolve(), {p.resolve() for p in skip})
        if not files:
            raise UsageError(f"{source} holds no files to upload")
        return FOLDER, files
    st = source.stat()
    _check_regular(st, str(source))
    return FILE, [_source_file(_name(source.name), source, st)]


def _walk(root: Path, skip: set[Path]) -> list[SourceFile]:
    found: list[SourceFile] = []
    active: set[Path] = set()

    def visit(folder: Path, rel: str) -> None:
        real = folder.resolve()
        if real in skip:
            return
        if real in active:
            raise UsageError(f"Symlink loop at {rel or '.'!r} in {root}")
        active.add(real)
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = _name(entry.name)
                inner = f"{rel}/{name}" if rel else name
                full = Path(entry.path)
                if entry.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(root):
                        raise UsageError(
                            f"{inner} is a symlink to {target}, outside the folder being uploaded",
                            hint="Copy the file into the folder, or remove the link.",
                        )
                    if not target.exists():
                        raise UsageError(f"{inner} is a broken symlink")
                if entry.is_dir(follow_symlinks=True):
                    visit(full, inner)
                    continue
                st = full.stat()
                _check_regular(st, inner)
                found.append(_source_file(inner, full, st))
        active.discard(real)

    visit(root, "")
    return sorted(found, key=lambda f: f.rel)


def _check_regular(st: os.stat_result, shown: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"{shown} is not a regular file (a pipe, socket or device) and cannot be uploaded"
        )


def _source_file(rel: str, path: Path, st: os.stat_result) -> SourceFile:
    safe_relative(rel)
    executable = bool(st.st_mode & stat.S_IXUSR)
    return SourceFile(rel, path, st.st_size, st.st_mtime_ns, executable)


def _name(name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"The file name {name.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8",
            hint="Rename the file; dataset paths are stored as UTF-8.",
        ) from None
    if "\\" in name:
        raise UsageError(f"The file name {name!r} holds a backslash, which datasets do not allow")
    return name
