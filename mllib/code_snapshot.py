"""The code of a run: the project's files (minus ignored ones) stored as a tree in the store.

Its hash is the run's code hash; the stored tree lets `mllib runs rerun` reproduce a run after the
files changed, and will let remote agents receive only files they lack. Env files are never
included (they may hold secrets), nor large files, which belong in datasets.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.config import Config
from mllib.store import BlobStore, Tree, put_files

if TYPE_CHECKING:
    import pathspec

ALWAYS_EXCLUDED = [
    ".mllib/",
    ".git/",
    ".hg/",
    "__pycache__/",
    "*.py[cod]",
    ".venv/",
    "venv/",
    ".ipynb_checkpoints/",
    "node_modules/",
    ".env",
    ".env.*",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    ".DS_Store",
]
IGNORE_FILES = (".gitignore", ".mllibignore")


@dataclass(frozen=True)
class CodeFiles:
    paths: list[str]
    skipped_large: list[tuple[str, int]]


def project_files(root: Path, config: Config) -> CodeFiles:
    """The files of a project a run's code consists of, and the large ones left out."""
    lines = list(ALWAYS_EXCLUDED) + list(config.code.exclude)
    for name in IGNORE_FILES:
        if (root / name).is_file():
            lines += (root / name).read_text(encoding="utf-8", errors="replace").splitlines()
    spec = _ignore_spec(tuple(lines))
    max_bytes = int(config.code.max_file_mb * 1024 * 1024)
    paths, large = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d for d in dirnames if not spec.match_file(f"{(rel_dir / d).as_posix()}/")
        )
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if spec.match_file(rel):
                continue
            try:  # one lstat: a regular file, not a symlink
                info = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            size = info.st_size
            if size > max_bytes:
                large.append((rel, size))
            else:
                paths.append(rel)
    return CodeFiles(sorted(paths), large)


@lru_cache(maxsize=16)
def _ignore_spec(lines: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """The patterns compiled once per process (every run of a study stores the same project)."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def snapshot(store: BlobStore, root: Path, config: Config) -> tuple[Tree, CodeFiles]:
    """Store the project's code; the tree's sha256 is the code hash."""
    files = project_files(root, config)
    return put_files(store, root, files.paths), files
