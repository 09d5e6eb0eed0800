"""Seeding the random generators a model uses, including those of libraries it imports later.

Models often import numpy or torch inside their methods, after the worker has started; a
library seeded only if already imported would then start from a random seed, and two runs with
the same seed would differ. So a library not imported yet is seeded the moment its import
finishes, through a finder on `sys.meta_path` that leaves the import itself untouched.
"""

from __future__ import annotations

import importlib.abc
import random
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

SEEDERS: dict[str, Callable[[ModuleType, int], Any]] = {
    "numpy": lambda module, seed: module.random.seed(seed),
    "torch": lambda module, seed: module.manual_seed(seed),
}


def seed_libraries(seed: int) -> None:
    """Seed `random` now, and numpy and torch now or as soon as they are imported."""
    random.seed(seed)
    pending = {}
    for name, seeder in SEEDERS.items():
        if name in sys.modules:
            seeder(sys.modules[name], seed)
        else:
            pending[name] = seeder
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SeedOnImport)]
    if pending:
        sys.meta_path.insert(0, _SeedOnImport(pending, seed))


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of a watched library to seed it once loaded."""

    def __init__(self, pending: dict[str, Callable[[ModuleType, int], Any]], seed: int) -> None:
        self.pending = pending
        self.seed = seed

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        seeder = self.pending.pop(fullname, None)
        if seeder is None:
            return None
        if not self.pending:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find and finder is not self else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            load = loader.exec_module

            def exec_module(module: ModuleType) -> None:
                load(module)
                seeder(module, self.seed)

            loader.exec_module = exec_module  # this loader instance serves this import only
        return spec
