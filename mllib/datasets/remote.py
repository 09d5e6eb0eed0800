"""Datasets of a remote run: both halves of handing them to an agent.

Here: send the chunks (and manifests) of each version the agent's store lacks, through the
agents' own blob transfer (pipelined SFTP, hash-checked on arrival). On the agent:
materialise each version from its store into its own read-only cache, and give the run the
variables pointing there. The agent's store keeps the chunks, so a retried or later run on the
same agent sends nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.datasets.binding import DatasetUse, dataset_uses
from mllib.datasets.chunkstore import LocalChunkStore, dataset_store
from mllib.datasets.format import human_bytes
from mllib.datasets.materialize import load_manifest, materialize
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.agents.rpc import AgentClient


def send_datasets(
    ws: Workspace, run_id: str, agent: AgentClient
) -> tuple[list[dict[str, Any]], list[str]]:
    """Send what `agent` lacks of the run's datasets; returns them as the agent's `start` takes
    them, and one line per dataset saying what was sent."""
    from mllib.agents.transfer import send_blobs

    store = dataset_store(ws.project.store_path)
    uses = dataset_uses(ws, run_id)
    notes = []
    for use in uses:
        wanted = [*load_manifest(store, use.sha256).chunk_digests, use.sha256]
        lacking = agent.call("missing", shas=wanted)
        sent = send_blobs(agent, store.blobs, lacking)
        notes.append(
            f"dataset {use.ref}: sent {len(lacking)} chunk(s) ({human_bytes(sent)}) to agent "
            f"{agent.spec.name}, {len(wanted) - len(lacking)} already there"
        )
    return [asdict(use) for use in uses], notes


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
