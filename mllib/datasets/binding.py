"""Datasets handed to runs: `--data train=mnist@3` and `[data] train = "mnist@3"`.

Each binding sets one env variable (see refs.env_var_for: `train` -> TRAIN_DATA) to the
materialised, read-only copy of the version: the file itself for a one-file dataset, the folder
otherwise. The same variable feeds a `mllib.Param(..., env="TRAIN_DATA")`, overriding any
`.env.local` value, and reaches runtimes as Job.data_mounts (env variable -> host path) so a
container runtime can mount it read-only and rewrite the variable. A remote run's versions are
sent to its agent (mllib.agents.remote) and materialised there instead (mllib.datasets.remote).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mllib.datasets.catalog import Version, get_version, link_run, run_links
from mllib.datasets.chunkstore import dataset_store
from mllib.datasets.materialize import data_path, materialize
from mllib.datasets.progress import Progress
from mllib.datasets.refs import DatasetRef, parse_binding
from mllib.datasets.settings import cache_dir, config_bindings
from mllib.errors import NotFoundError, UsageError
from mllib.registry.db import Registry
from mllib.workspace import Workspace

Lookup = Callable[[DatasetRef], Version]  # finds the version a reference names, in some catalog


@dataclass(frozen=True)
class DatasetUse:
    """One dataset version a run reads, and the env variable it arrives in."""

    env: str
    ref: str  # name@version, for messages
    sha256: str  # the version's manifest digest
    kind: str  # file or folder
    entry: str | None  # a one-file version's file name

    @classmethod
    def of(cls, env: str, version: Version) -> DatasetUse:
        return cls(env, version.ref, version.sha256, version.kind, version.entry)

    def path_in(self, cache: Path) -> Path:
        """Where the run reads it, once materialised under `cache`."""
        return data_path(cache, self.sha256, self.kind, self.entry)


def resolve_bindings(
    ws: Workspace,
    data: Sequence[str] | None = None,
    *,
    inherit_from: str | None = None,
    with_config: bool = True,
    lookup: Lookup | None = None,
) -> list[DatasetUse]:
    """The dataset versions a run gets: `[data]` in mllib.toml, then those of the run it continues
    (`inherit_from`: an evaluated training run, or a rerun's original), then `--data` items.
    `lookup` finds each version (default: in this project's catalog; a team server's runs read
    the server's)."""
    refs: dict[str, DatasetRef] = dict(config_bindings(ws.project.config)) if with_config else {}
    if inherit_from is not None and lookup is not None:  # versions of that catalog, by link
        for link in run_links(ws.registry, inherit_from):
            refs[link["env"]] = DatasetRef(link["name"], link["version"])
    elif inherit_from is not None:
        for use in dataset_uses(ws, inherit_from):
            name, _, version = use.ref.partition("@")
            refs[use.env] = DatasetRef(name, int(version))
    given: set[str] = set()
    for item in data or []:
        env, ref = parse_binding(item)
        if env in given:
            raise UsageError(f"--data sets {env} twice", hint="Give each data key once.")
        given.add(env)
        refs[env] = ref
    find = lookup or (lambda ref: get_version(ws.registry, ref))
    return [DatasetUse.of(env, find(ref)) for env, ref in sorted(refs.items())]


def _cache(ws: Workspace) -> Path:
    return cache_dir(ws.project.config, ws.project.state_dir)


def binding_env(ws: Workspace, uses: Iterable[DatasetUse]) -> dict[str, str]:
    """env variable -> the local path the run will read (known before anything is materialised)."""
    return {use.env: str(use.path_in(_cache(ws))) for use in uses}


def materialize_uses(
    ws: Workspace, uses: Iterable[DatasetUse], progress: Progress | None = None
) -> dict[str, Path]:
    """Build (or find intact) each version's read-only local copy; env variable -> path."""
    uses = list(uses)
    if not uses:  # most runs read no dataset: no store to open
        return {}
    store = dataset_store(ws.project.store_path)
    cache = _cache(ws)
    paths = {}
    for use in uses:
        materialize(store, use.sha256, cache, progress, label=use.ref)
        paths[use.env] = use.path_in(cache)
    return paths


def record_uses(reg: Registry, run_id: str, uses: Iterable[DatasetUse]) -> None:
    """Link a run to the versions it reads (joins the transaction that records the run)."""
    links = []
    for use in uses:
        name, _, version = use.ref.partition("@")
        links.append((use.env, name, int(version), use.sha256))
    link_run(reg, run_id, links)


def dataset_uses(ws: Workspace, run_id: str) -> list[DatasetUse]:
    """The versions a recorded run reads; a NotFoundError if one has been removed since."""
    rows = ws.registry.query(
        """
        SELECT l.env, l.name, l.version, l.sha256, d.kind, d.entry, d.deleted_at
        FROM run_datasets l JOIN datasets d ON d.name = l.name AND d.version = l.version
        WHERE l.run_id = ? ORDER BY l.env
        """,
        (run_id,),
    )
    gone = [f"{r['name']}@{r['version']}" for r in rows if r["deleted_at"]]
    if gone:
        raise NotFoundError(
            f"Dataset version(s) {', '.join(gone)} used by run {run_id} were removed",
            hint="Upload the data again and start a new run with --data.",
        )
    return [
        DatasetUse(r["env"], f"{r['name']}@{r['version']}", r["sha256"], r["kind"], r["entry"])
        for r in rows
    ]
