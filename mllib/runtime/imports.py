"""The installed distributions a project's code imports, so its image has them without being told.

A model that runs as a local process uses whatever this environment has installed; the same
model in a container needs those packages in its image. Reading the project's imports (its .py
files, parsed, never run) and mapping them to the distributions installed here (numpy ->
numpy, sklearn -> scikit-learn) gives the image what the code uses, at this machine's versions,
even when no requirements.txt lists them. `[runtime] detect_imports = false` turns this off.

Each step of a run gets what its own code reaches: training everything the project imports;
evaluation and serving the module-level imports and the imports inside the methods they call
(`evaluate`/`test`, `predict`/`predict_batch`, `load`, `__init__`, and whatever those call by
name, in any of the project's files), so a package only `train()` imports is not installed to
serve. A trained model's pickle may need more (a scikit-learn estimator kept on `self`): the
worker records the modules it names, and they are added (`extra_modules`).

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
from collections import deque
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from mllib.userdirs import cache_dir

SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist"}
MAX_FILES = 2000


# The methods each step calls first; what they call by name is followed.
STEP_ENTRIES = {
    "evaluate": ("evaluate", "test", "load", "__init__", "__setstate__"),
    "serve": ("predict", "predict_batch", "load", "__init__", "__setstate__"),
}


def imported_distributions(
    code_dir: Path, *, step: str = "train", extra_modules: Iterable[str] | None = None
) -> dict[str, str]:
    """Distribution name -> why (e.g. "model.py imports sklearn"), for the code in `code_dir`.

    `step`: "train" (everything the code imports), "evaluate" or "serve" (what those steps
    reach, see above). `extra_modules`: more module names the step needs (a model's pickle's).
    Left out: the standard library, the project's own modules, mllib, names this environment
    does not have, and names several distributions share (namespace packages such as `google`).
    """
    local = _local_names(code_dir)
    owners = import_name_owners()
    found: dict[str, str] = {}
    needed = [*_imports(code_dir, step)]
    needed += [("the trained model", name.split(".")[0]) for name in extra_modules or ()]
    for rel, name in needed:
        if name in local or name in sys.stdlib_module_names or name in ("mllib", "__future__"):
            continue
        dists = owners.get(name, [])
        if len(dists) == 1 and dists[0].lower() != "mllib":
            verb = "needs" if rel == "the trained model" else "imports"
            found.setdefault(dists[0], f"{rel} {verb} {name}")
    return found


def missing_modules(
    code_dir: Path, *, step: str = "train", extra_modules: Iterable[str] | None = None
) -> dict[str, str]:
    """Top-level module -> who needs it (e.g. "model.py"), for the modules `step` of the code in
    `code_dir` imports (and `extra_modules`) that this environment cannot import: neither the
    standard library, the project's own, nor installed here."""
    from importlib.util import find_spec

    local = _local_names(code_dir)
    needed = [*_imports(code_dir, step)]
    needed += [("the trained model", name.split(".")[0]) for name in extra_modules or ()]
    missing: dict[str, str] = {}
    for rel, name in needed:
        if name in local or name in sys.stdlib_module_names or name in ("mllib", "__future__"):
            continue
        if name in missing:
            continue
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing[name] = rel
    return missing


def import_name_owners() -> dict[str, list[str]]:
    """Top-level import name -> distributions providing it, in this environment (cached)."""
    key = _environment_key()
    folder = cache_dir()
    cache = folder / f"import-names-{key}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    owners = {name: sorted(set(dists)) for name, dists in metadata.packages_distributions().items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
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


def _imports(root: Path, step: str = "train") -> Iterator[tuple[str, str]]:
    """(file relative to root, top-level module name) for each absolute import `step` reaches."""
    parsed = []
    for path in _python_files(root):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        parsed.append((path.relative_to(root).as_posix(), tree))
    if step not in STEP_ENTRIES:
        for rel, tree in parsed:
            for name in _imported_names(tree):
                yield rel, name
        return
    functions: dict[str, list[tuple[str, ast.AST]]] = {}
    for rel, tree in parsed:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.setdefault(node.name, []).append((rel, node))
    for rel, tree in parsed:  # module level (class bodies too): runs when the file is imported
        for name in _imported_names(tree, skip_functions=True):
            yield rel, name
    reached: set[str] = set()
    todo = [name for name in STEP_ENTRIES[step] if name in functions]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for rel, function in functions[name]:
            for imported in _imported_names(function):
                yield rel, imported
            todo += [called for called in _called_names(function) if called in functions]


def _imported_names(tree: ast.AST, *, skip_functions: bool = False) -> Iterator[str]:
    """Top-level module names of the absolute imports in `tree`, in reading order (breadth
    first, as ast.walk); `skip_functions`: not those inside functions (which run only when
    called)."""
    queue = deque([tree])
    while queue:
        node = queue.popleft()
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]
        for child in ast.iter_child_nodes(node):
            if not (skip_functions and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)):
                queue.append(child)


def _called_names(function: ast.AST) -> set[str]:
    """Names `function` calls or refers to as attributes (self.helper(), helper())."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return names


def _local_names(root: Path) -> set[str]:
    """Modules and packages the project provides itself (importable from its folder)."""
    names = set()
    for path in _python_files(root):
        rel = path.relative_to(root)
        names.add(rel.parts[0] if len(rel.parts) > 1 else path.stem)
    return names
