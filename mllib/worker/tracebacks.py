"""Tracebacks as the user should see them: their frames, not mllib's or importlib's."""

from __future__ import annotations

import traceback
from pathlib import Path

_MLLIB_DIR = str(Path(__file__).resolve().parents[1])


def _internal(filename: str) -> bool:
    return filename.startswith(_MLLIB_DIR) or filename.startswith("<frozen importlib")


def user_traceback(exc: BaseException) -> str:
    """Format `exc` (and its chained causes) keeping only frames outside mllib."""
    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    node: traceback.TracebackException | None = te
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        node.stack = traceback.StackSummary.from_list(
            [f for f in node.stack if not _internal(f.filename)]
        )
        node = node.__cause__ or node.__context__
    return "".join(te.format())
