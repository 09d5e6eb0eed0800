"""The worker's command line: the one entrypoint every runtime runs, written and read in one place.

>>> worker_argv("python3", "/mllib/run", "/mllib/code")
['python3', '-u', '-m', 'mllib.worker', '--run-dir', '/mllib/run', '--code-dir', '/mllib/code']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

WORKER_MODULE = "mllib.worker"


def worker_argv(python: str, run_dir: str | Path, code_dir: str | Path) -> list[str]:
    """The command a runtime runs: `python -u -m mllib.worker --run-dir D --code-dir C`."""
    return [
        python,
        "-u",
        "-m",
        WORKER_MODULE,
        "--run-dir",
        str(run_dir),
        "--code-dir",
        str(code_dir),
    ]


def parse_worker_argv(argv: Sequence[str] | None = None) -> tuple[Path, Path]:
    """The worker's side: (run folder, code folder), both resolved."""
    import argparse  # here: the runtimes that import worker_argv never parse

    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--code-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    return args.run_dir.resolve(), args.code_dir.resolve()
