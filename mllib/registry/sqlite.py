"""sqlite-utils, imported the registry's way (without pandas and numpy): for the registry's
connection and for every feature's migration set."""

from __future__ import annotations

import sys
import threading
from types import ModuleType


def import_sqlite_utils() -> ModuleType:
    """Import sqlite_utils without letting it import pandas and numpy (~0.3 s) when installed.

    sqlite-utils only uses them to map their types on insert, which the registry never does. A
    process that already imported them is unaffected; afterwards they import normally. Hiding a
    module is seen by every thread, so it is done only while no other thread runs (an inline
    model server's predict thread may be importing numpy right then).
    """
    if "sqlite_utils" in sys.modules:
        return sys.modules["sqlite_utils"]
    alone = threading.active_count() == 1
    hidden = [name for name in ("pandas", "numpy") if alone and name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            del sys.modules[name]
    return sqlite_utils
