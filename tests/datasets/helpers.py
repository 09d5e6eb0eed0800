"""Helpers for dataset tests: generated content, the real CLI, and polling the store."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mllib.datasets.manifest import CHUNK_SIZE

MIB = 1024 * 1024
__all__ = ["CHUNK_SIZE", "MIB"]


def pattern(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ in every chunk (and between seeds) without costing os.urandom time."""
    block = hashlib.sha256(f"{seed}".encode()).digest() * (MIB // 32)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(8, "little") + block[8:]
        i += 1
    return bytes(out[:size])


def mllib_cli(project: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """The real `mllib` command in `project`, plain output (CI mode)."""
    env = {**os.environ, "CI": "true", "COLUMNS": "200", **kw.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "mllib", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 120),
        check=False,
        **kw,
    )


def stored_chunks(project: Path) -> set[str]:
    objects = project / ".mllib" / "store" / "datasets" / "objects"
    if not objects.is_dir():
        return set()
    return {p.parent.name + p.name for p in objects.glob("*/*")}


def journal_chunks(project: Path) -> int:
    """Chunks recorded by upload journals in progress."""
    count = 0
    for path in (project / ".mllib" / "store" / "datasets" / "uploads").glob("*.jsonl"):
        count += path.read_bytes().count(b'{"chunk"')
    return count


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        time.sleep(interval)


def upload_json(project: Path, *args: str) -> dict:
    proc = mllib_cli(project, "data", "upload", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
