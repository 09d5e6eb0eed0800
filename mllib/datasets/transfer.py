"""Sending a dataset version to another chunk store (an agent host's chunk cache): only what it lacks.

Three steps, each one command on the peer, so any channel that runs a command and pipes its
stdin/stdout (a local subprocess, an SSH exec channel) carries them:

1. `python -m mllib.datasets missing --store DIR`      digests in (one per line), missing ones out
2. `python -m mllib.datasets receive --store DIR`      chunk frames in, `{"chunks", "bytes"}` out
3. `python -m mllib.datasets materialize --store DIR --cache DIR SHA256`  `{"root", "path"}` out

A frame is `<sha256 hex> <length>\\n` then the bytes; `end\\n` closes the stream. The receiver
checks every chunk's hash before storing it, so a damaged transfer never enters the cache.

>>> peer = CommandPeer([sys.executable], "/srv/agent/chunks", "/srv/agent/data")  # doctest: +SKIP
>>> sync_version(local_store, version.sha256, peer).sent_chunks  # doctest: +SKIP
12
>>> sync_version(local_store, version.sha256, peer).sent_chunks  # a retried run  # doctest: +SKIP
0
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.errors import DatasetChangedError
from mllib.datasets.materialize import load_manifest
from mllib.datasets.progress import NoProgress, Progress

END = b"end\n"
MAX_FRAME = 64 * 1024 * 1024


class Peer(Protocol):
    """Another chunk store, reached somehow (a subprocess here; an SSH channel for agents)."""

    def missing(self, digests: Sequence[str]) -> list[str]: ...

    def send(self, source: ChunkStore, digests: Sequence[str], progress: Progress) -> int:
        """Send these chunks from `source`; returns the bytes sent."""

    def materialize(self, digest: str) -> str:
        """Build the version's read-only copy on the peer; returns the path a run reads."""


@dataclass(frozen=True)
class SyncResult:
    path: str  # on the peer: the file of a one-file version, else its folder
    sent_chunks: int
    sent_bytes: int
    present_chunks: int  # already on the peer: not sent


def sync_version(
    store: ChunkStore, digest: str, peer: Peer, progress: Progress | None = None
) -> SyncResult:
    """Make version `digest` readable on `peer`, sending only the chunks (and manifest) it lacks."""
    manifest = load_manifest(store, digest)
    wanted = [*manifest.chunk_digests, digest]  # the manifest last: a peer holding it has it all
    lacking = peer.missing(wanted)
    progress = progress or NoProgress()
    sent = 0
    if lacking:
        total = sum(store.size(d) or 0 for d in lacking)
        progress.start(f"Sending dataset {digest[:12]}", total)
        sent = peer.send(store, lacking, progress)
    return SyncResult(peer.materialize(digest), len(lacking), sent, len(wanted) - len(lacking))


def write_frames(
    store: ChunkStore, digests: Iterable[str], out: BinaryIO, progress: Progress
) -> int:
    """Write chunks as frames, then the end marker; returns the payload bytes."""
    total = 0
    for digest in digests:
        data = store.read(digest)
        out.write(f"{digest} {len(data)}\n".encode())
        out.write(data)
        total += len(data)
        progress.advance(len(data))
    out.write(END)
    out.flush()
    return total


def read_frames(inp: BinaryIO, store: ChunkStore) -> tuple[int, int]:
    """Store the chunks of a frame stream, each checked against its digest; (chunks, bytes)."""
    count = total = 0
    while True:
        header = inp.readline(200)
        if header == END:
            return count, total
        try:
            digest, length_text = header.decode().split()
            length = int(length_text)
        except ValueError:
            raise DatasetChangedError(f"Bad chunk frame header {header[:80]!r}") from None
        if len(digest) != 64 or not 0 <= length <= MAX_FRAME:
            raise DatasetChangedError(f"Bad chunk frame header {header[:80]!r}")
        data = inp.read(length)
        if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
            raise DatasetChangedError(f"Chunk {digest[:16]} arrived damaged or cut short")
        store.put(data, digest)
        count += 1
        total += length


def peer_command(action: str, store_dir: str, cache_dir: str | None = None) -> list[str]:
    """The arguments after the peer's Python for one step (`missing`, `receive`, `materialize`)."""
    argv = ["-m", "mllib.datasets", action, "--store", store_dir]
    if action == "materialize":
        argv += ["--cache", cache_dir or ""]
    return argv


class CommandPeer:
    """A Peer whose steps run as `PREFIX... -m mllib.datasets ...` commands (PREFIX: the Python to
    run, after e.g. `ssh host`); a local subprocess peer is this with `[sys.executable]`."""

    def __init__(self, prefix: Sequence[str], store_dir: str, cache_dir: str) -> None:
        self.prefix = list(prefix)
        self.store_dir = store_dir
        self.cache_dir = cache_dir

    def _run(self, action: str, stdin: bytes, *extra: str) -> bytes:
        argv = [*self.prefix, *peer_command(action, self.store_dir, self.cache_dir), *extra]
        proc = subprocess.run(argv, input=stdin, capture_output=True, check=False)
        if proc.returncode != 0:
            raise DatasetChangedError(
                f"The peer's `{action}` step failed: {proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout

    def missing(self, digests: Sequence[str]) -> list[str]:
        return self._run("missing", "".join(f"{d}\n" for d in digests).encode()).decode().split()

    def send(self, source: ChunkStore, digests: Sequence[str], progress: Progress) -> int:
        argv = [*self.prefix, *peer_command("receive", self.store_dir)]
        with subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            try:
                with proc.stdin:
                    sent = write_frames(source, digests, proc.stdin, progress)
            except BrokenPipeError:
                sent = -1
            out, err = proc.stdout.read(), proc.stderr.read()
        if proc.returncode != 0 or sent < 0:
            raise DatasetChangedError(
                f"The peer's `receive` step failed: {err.decode(errors='replace').strip()}"
            )
        json.loads(out)
        return sent

    def materialize(self, digest: str) -> str:
        return json.loads(self._run("materialize", b"", digest))["path"]
