"""Datasets handed to runs: `--data train=mnist@3` and `[data] train = "mnist@3"`.

Each binding sets one env variable (see refs.env_var_for: `train` -> TRAIN_DATA) to the
materialised, read-only copy of the version: the file itself for a one-file dataset, the folder
otherwise. The same variable feeds a `mllib.Param(..., env="TRAIN_DATA")`, overriding any
`.env.local` value, and reaches runtimes as Job.data_mounts (env variable -> host path) so a
container runtime can mount it read-only and rewrite the variable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mllib.datasets.catalog import Version, get_version, link_run
from mllib.datasets.chunkstore import dataset_store
from mllib.datasets.materialize import data_path, materialize
from mllib.datasets.progress import Progress
from mllib.datasets.refs import DatasetRef, parse_binding
from mllib.datasets.settings import cache_dir, config_bindings
from mllib.errors import NotFoundError, UsageError
from mllib.workspace import Workspace


@dataclass(frozen=True)
class Binding:
    env: str
    version: Version


def resolve_bindings(
    ws: Workspace,
    data: Sequence[str] | None = None,
    *,
    inherit_from: str | None = None,
    with_config: bool = True,
) -> list[Binding]:
    """The dataset versions a run gets: `[data]` in mllib.toml, then those of the run it continues
    (`inherit_from`: an evaluated training run, or a rerun's original), then `--data` items."""
    refs: dict[str, DatasetRef] = dict(config_bindings(ws.project.config)) if with_config else {}
    if inherit_from is not None:
        for link in recorded(ws, inherit_from):
            refs[link["env"]] = DatasetRef(link["name"], link["version"])
    given: set[str] = set()
    for item in data or []:
        env, ref = parse_binding(item)
        if env in given:
            raise UsageError(f"--data sets {env} twice", hint="Give each data key once.")
        given.add(env)
        refs[env] = ref
    return [Binding(env, get_version(ws.registry, ref)) for env, ref in sorted(refs.items())]


def binding_env(ws: Workspace, bindings: Iterable[Binding]) -> dict[str, str]:
    """env variable -> the path the run will read (known before anything is materialised)."""
    cache = cache_dir(ws.project.config, ws.project.state_dir)
    return {
        b.env: str(data_path(cache, b.version.sha256, b.version.kind, b.version.entry))
        for b in bindings
    }


def materialize_bindings(
    ws: Workspace, bindings: Iterable[Binding], progress: Progress | None = None
) -> dict[str, Path]:
    """Build (or reuse) each version's read-only copy; env variable -> path."""
    items = [
        (b.version.ref, b.env, b.version.sha256, b.version.kind, b.version.entry) for b in bindings
    ]
    return _materialize(ws, items, progress)


def _materialize(
    ws: Workspace,
    items: Iterable[tuple[str, str, str, str, str | None]],
    progress: Progress | None,
) -> dict[str, Path]:
    """(ref, env, sha256, kind, entry) items -> env variable -> materialised path."""
    store = dataset_store(ws.project.store_path)
    cache = cache_dir(ws.project.config, ws.project.state_dir)
    paths = {}
    for ref, env, digest, kind, entry in items:
        materialize(store, digest, cache, progress, label=ref)
        paths[env] = data_path(cache, digest, kind, entry)
    return paths


def record_bindings(ws: Workspace, run_id: str, bindings: Iterable[Binding]) -> None:
    link_run(ws.registry, run_id, [(b.env, b.version) for b in bindings])


def recorded(ws: Workspace, run_id: str) -> list[dict]:
    """What a run read: env, name, version, sha256, kind, entry."""
    return ws.registry.query(
        """
        SELECT l.env, l.name, l.version, l.sha256, d.kind, d.entry, d.deleted_at
        FROM run_datasets l JOIN datasets d ON d.name = l.name AND d.version = l.version
        WHERE l.run_id = ? ORDER BY l.env
        """,
        (run_id,),
    )


def run_data_mounts(ws: Workspace, run_id: str) -> dict[str, Path]:
    """For a run about to start: env variable -> materialised path of each dataset it records."""
    links = recorded(ws, run_id)
    gone = [f"{link['name']}@{link['version']}" for link in links if link["deleted_at"]]
    if gone:
        raise NotFoundError(
            f"Dataset version(s) {', '.join(gone)} used by run {run_id} were removed",
            hint="Upload the data again and start a new run with --data.",
        )
    items = [
        (f"{x['name']}@{x['version']}", x["env"], x["sha256"], x["kind"], x["entry"]) for x in links
    ]
    return _materialize(ws, items, progress=None)
