"""Trees: a folder stored as a manifest (sorted paths, sha256, size, mode) that is itself a blob.

The tree's hash depends only on file paths, contents and the executable bit, so the same model
saved by two runtimes, or the same code on two hosts, has the same hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from mllib.store.blobs import BlobStore


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX, relative
    sha256: str
    size: int
    mode: int  # 0o755 or 0o644


@dataclass(frozen=True)
class Tree:
    sha256: str
    files: list[FileEntry]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def safe_relative(path: str) -> PurePosixPath:
    """A manifest path that stays inside its folder: relative, no `..`, no empty parts."""
    pure = PurePosixPath(path)
    if (
        pure.is_absolute()
        or not pure.parts
        or any(p in ("..", "") for p in pure.parts)
        or "\\" in path
    ):
        raise ValueError(f"unsafe path in manifest: {path!r}")
    return pure


def walk_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `folder`, sorted; symlinks leaving it are skipped."""
    root = folder.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            full = Path(dirpath) / name
            if full.is_symlink() and not full.resolve().is_relative_to(root):
                continue
            if full.is_file():
                found.append(full.relative_to(folder).as_posix())
    return sorted(found)


def put_files(store: BlobStore, root: Path, paths: Iterable[str], *, move: bool = False) -> Tree:
    """Store the given files of `root` and a manifest of them; returns the tree."""
    entries = []
    for rel in sorted(set(paths)):
        full = root / rel
        mode = 0o755 if os.access(full, os.X_OK) else 0o644
        blob = store.put_file(full, move=move)
        entries.append(FileEntry(str(safe_relative(rel)), blob.sha256, blob.size, mode))
    manifest = json.dumps(
        {"version": 1, "files": [asdict(e) for e in entries]}, sort_keys=True, separators=(",", ":")
    ).encode()
    return Tree(store.put_bytes(manifest).sha256, entries)


def put_tree(store: BlobStore, folder: Path, *, move: bool = False) -> Tree:
    """Store every file under `folder`."""
    return put_files(store, folder, walk_files(folder), move=move)


def read_tree(store: BlobStore, sha256: str) -> Tree:
    data = json.loads(store.get_bytes(sha256))
    return Tree(sha256, [FileEntry(**f) for f in data["files"]])


def materialize_tree(store: BlobStore, sha256: str, dest: Path) -> Tree:
    """Write a stored tree's files under `dest` (created); paths are checked to stay inside it."""
    tree = read_tree(store, sha256)
    dest.mkdir(parents=True, exist_ok=True)
    for entry in tree.files:
        target = dest / safe_relative(entry.path)
        store.copy_to(entry.sha256, target)
        os.chmod(target, entry.mode)
    return tree
