"""Moving content-addressed blobs between this machine's store and an agent's, over SFTP.

The primitive (also for datasets' chunks): ask the agent which sha256s it lacks, upload only
those into its `incoming/` folder with pipelined SFTP writes, then have it verify and store them.
Downloads fetch what the local store lacks with prefetching reads and verify before storing.

>>> send_blobs(agent, ws.store, shas)        # doctest: +SKIP  -> bytes sent
>>> send_tree(agent, ws.store, tree_sha)     # doctest: +SKIP  -> a tree and its files
>>> fetch_blobs(agent, ws.store, shas)       # doctest: +SKIP  -> bytes received
"""

from __future__ import annotations

import os
import posixpath
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from mllib.agents.rpc import AgentClient
from mllib.store import BlobStore, read_tree
from mllib.store.blobs import hash_file

WRITE_SIZE = 1 << 20  # paramiko splits it into pipelined 32 KiB requests
COMMIT_BATCH = 500


def put_stream(sftp, source: BinaryIO, remote_path: str) -> int:
    """Write `source` to `remote_path` with pipelined requests (no per-request round trip)."""
    sent = 0
    with sftp.open(remote_path, "wb") as handle:
        handle.set_pipelined(True)
        while chunk := source.read(WRITE_SIZE):
            handle.write(chunk)
            sent += len(chunk)
    return sent


def put_file(sftp, local: Path, remote_path: str) -> int:
    with open(local, "rb") as source:
        return put_stream(sftp, source, remote_path)


def send_blobs(agent: AgentClient, store: BlobStore, shas: Iterable[str]) -> int:
    """Upload the blobs among `shas` the agent lacks; returns the bytes sent."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return 0
    missing = agent.call("missing", shas=wanted)
    incoming = agent.hello["incoming"]
    sent, batch = 0, []
    for sha in missing:
        name = f"{sha}.{secrets.token_hex(4)}"  # concurrent senders never share a path
        with store.open(sha) as source:
            sent += put_stream(agent.conn.sftp, source, posixpath.join(incoming, name))
        batch.append({"sha256": sha, "name": name})
        if len(batch) >= COMMIT_BATCH:
            agent.call("commit", items=batch, timeout=600)
            batch = []
    if batch:
        agent.call("commit", items=batch, timeout=600)
    return sent


def send_tree(agent: AgentClient, store: BlobStore, tree_sha: str) -> int:
    """Upload a stored tree (a code snapshot, a model): its manifest and the files the agent lacks."""
    tree = read_tree(store, tree_sha)
    return send_blobs(agent, store, [*(f.sha256 for f in tree.files), tree_sha])


def fetch_blobs(agent: AgentClient, store: BlobStore, shas: Iterable[str]) -> int:
    """Download the blobs among `shas` this store lacks, verifying each; returns bytes received."""
    wanted = [s for s in dict.fromkeys(shas) if not store.has(s)]
    if not wanted:
        return 0
    paths = agent.call("blob_paths", shas=wanted)
    received = 0
    tmp_dir = getattr(store, "tmp", None)
    if tmp_dir is not None:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    for sha in wanted:
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="fetch-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                agent.conn.sftp.getfo(paths[sha], handle)
            digest, size = hash_file(tmp)
            if digest != sha:
                raise OSError(f"blob {sha} arrived corrupt (sha256 {digest})")
            store.put_file(tmp, move=True)
            received += size
        finally:
            tmp.unlink(missing_ok=True)
    return received


def fetch_tree(agent: AgentClient, store: BlobStore, tree_sha: str) -> int:
    received = fetch_blobs(agent, store, [tree_sha])
    tree = read_tree(store, tree_sha)
    return received + fetch_blobs(agent, store, [f.sha256 for f in tree.files])
