"""Helpers for dataset tests: generated content, the real CLI, and polling the store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mllib.datasets.manifest import CHUNK_SIZE
from tests.conftest import Result, run_cli, wait_for

MIB = 1024 * 1024
__all__ = ["CHUNK_SIZE", "MIB", "wait_for"]


def pattern(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ in every chunk (and between seeds) without costing os.urandom time."""
    block = hashlib.sha256(f"{seed}".encode()).digest() * (MIB // 32)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += i.to_bytes(8, "little") + block[8:]
        i += 1
    return bytes(out[:size])


def write_config(project: Path, **data: object) -> None:
    """mllib.toml with these `[data]` settings; runs use the process runtime (the Docker one has
    its own dataset test in the runtime contract). URL uploads may reach the loopback test
    server (`allow_private_urls`, unless given)."""
    data = {"allow_private_urls": True, **data}
    lines = ['name = "demo"', "", "[runtime]", 'local = "process"', "", "[data]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in data.items()]
    (project / "mllib.toml").write_text("\n".join(lines) + "\n")


def mllib_cli(project: Path, *args: str, **kw) -> Result:
    """The real `mllib` command in `project`, in CI mode (plain progress lines)."""
    return run_cli(list(args), project, env={"CI": "true", **kw.pop("env", {})}, **kw)


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


def upload_json(project: Path, *args: str) -> dict:
    proc = mllib_cli(project, "data", "upload", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
