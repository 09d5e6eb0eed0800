"""The installed distributions a project's code imports, so its image has them without being told.

A model that runs as a local process uses whatever this environment has installed; the same
model in a container needs those packages in its image. Reading the project's imports (its .py
files, parsed, never run) and mapping them to the distributions installed here (numpy ->
numpy, sklearn -> scikit-learn) gives the image what the code uses, at this machine's versions,
even when no requirements.txt lists them. `[runtime] detect_imports = false` turns this off.

The map from import names to distributions reads every installed package's file list (a quarter
second with torch installed), so it is cached on disk per environment and rebuilt when a
site-packages folder changes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist"}
MAX_FILES = 2000
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mllib"


def imported_distributions(code_dir: Path) -> dict[str, str]:
    """Distribution name -> why (e.g. "model.py imports sklearn"), for the code in `code_dir`.

    Left out: the standard library, the project's own modules, mllib, names this environment
    does not have, and names several distributions share (namespace packages such as `google`).
    """
    local = _local_names(code_dir)
    owners = import_name_owners()
    found: dict[str, str] = {}
    for rel, name in _imports(code_dir):
        if name in local or name in sys.stdlib_module_names or name in ("mllib", "__future__"):
            continue
        dists = owners.get(name, [])
        if len(dists) == 1 and dists[0].lower() != "mllib":
            found.setdefault(dists[0], f"{rel} imports {name}")
    return found


def import_name_owners() -> dict[str, list[str]]:
    """Top-level import name -> distributions providing it, in this environment (cached)."""
    key = _environment_key()
    cache = CACHE_DIR / f"import-names-{key}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    owners = {name: sorted(set(dists)) for name, dists in metadata.packages_distributions().items()}
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(owners))
        temporary.replace(cache)
    except OSError:
        pass  # no writable cache: compute it again next time
    return owners


def _environment_key() -> str:
    """Changes when packages are installed or removed (their folders' modification times)."""
    parts = [sys.prefix]
    for entry in sys.path:
        try:
            parts.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            continue
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _python_files(root: Path) -> Iterator[Path]:
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                count += 1
                if count > MAX_FILES:
                    return
                yield Path(folder) / name


def _imports(root: Path) -> Iterator[tuple[str, str]]:
    """(file relative to root, top-level module name) for each absolute import."""
    for path in _python_files(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield rel, alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield rel, node.module.split(".")[0]


def _local_names(root: Path) -> set[str]:
    """Modules and packages the project provides itself (importable from its folder)."""
    names = set()
    for path in _python_files(root):
        rel = path.relative_to(root)
        names.add(rel.parts[0] if len(rel.parts) > 1 else path.stem)
    return names
