"""Tracebacks as the user should see them: their frames, not mllib's or importlib's."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

# mllib's folder as imported (in a venv: through a link, see mllib.runtime.venvs) and for real.
_MLLIB_DIRS = tuple(
    {
        f"{Path(__file__).parents[1].absolute()}{os.sep}",
        f"{Path(__file__).resolve().parents[1]}{os.sep}",
    }
)


def _internal(filename: str) -> bool:
    return filename.startswith(_MLLIB_DIRS) or filename.startswith("<frozen importlib")


def user_traceback(exc: BaseException, code_dir: Path | None = None) -> str:
    """Format `exc` (and its chained causes) keeping only frames outside mllib.

    When the code runs from a copy or mount of the user's folder (`code_dir`, with
    MLLIB_HOST_CODE_DIR naming the original), frames show the original's paths, as in a local run.
    """
    shown = os.environ.get("MLLIB_HOST_CODE_DIR")
    prefix = f"{code_dir}/" if code_dir is not None and shown else None
    te = traceback.TracebackException.from_exception(exc)
    seen = set()
    node: traceback.TracebackException | None = te
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        frames = [f for f in node.stack if not _internal(f.filename)]
        for frame in frames:
            if prefix and frame.filename.startswith(prefix):
                _ = frame.line  # read the source line before the path stops pointing at it
                frame.filename = f"{shown}/{frame.filename[len(prefix) :]}"
        node.stack = traceback.StackSummary.from_list(frames)
        node = node.__cause__ or node.__context__
    return "".join(te.format())
