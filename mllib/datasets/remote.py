"""Datasets of a remote run, on the agent: each version materialised from the agent's own store
into its read-only cache, and the variables pointing there. (Sending the chunks the agent lacks
is the agents' side: mllib.agents.remote.send_datasets.) The agent's store keeps the chunks, so
a retried or later run on the same agent sends nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.datasets.binding import DatasetUse
from mllib.datasets.chunkstore import LocalChunkStore
from mllib.datasets.materialize import materialize


def materialize_on_agent(
    store_root: Path, cache: Path, uses: list[dict[str, Any]]
) -> dict[str, str]:
    """On the agent: each version's read-only copy, built from the agent's store; env -> path."""
    store = LocalChunkStore(store_root)
    env = {}
    for fields in uses:
        use = DatasetUse(**fields)
        materialize(store, use.sha256, cache, label=use.ref)
        env[use.env] = str(use.path_in(cache))
    return env
