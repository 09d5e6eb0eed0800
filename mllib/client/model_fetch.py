"""A team server's model version brought here so this machine can deploy it (`mllib deploy
NAME[:V|@ALIAS] --env E` with a server configured: the version `mllib models list` shows). Its
two trees (the saved model, the code it was trained with) come blob by blob, only those this
store lacks, each checked against its hash; then the version is registered here in one
transaction, as a run with the server's run id (its origin: the server's URL in its runtime
note), keeping the server's number when this project never gave it. A version fetched before is
not fetched again. Nothing is registered until every file is here, so an interrupted fetch
leaves only blobs, which the next one reuses.

>>> fetch_version(server, ws, "iris@prod").ref  # doctest: +SKIP
'iris:3'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mllib.errors import MllibError, NotFoundError, RuntimeUnavailableError, UsageError
from mllib.registry.artifacts import add_artifact, model_version_of, register_model
from mllib.registry.runs import RunRecord, create_run
from mllib.store import read_tree

if TYPE_CHECKING:
    from mllib.client.http import Server
    from mllib.store import BlobStore
    from mllib.workspace import Workspace

PATH = "/api/v1/models"
RUNTIME = "server"  # the runtime a fetched version's run is recorded with


@dataclass(frozen=True)
class Fetched:
    """A server version as registered here: its run id (the server's), its number here and
    there, and what this fetch brought (0 files: it was here already)."""

    run_id: str
    name: str
    version: int
    server_version: int
    files: int
    bytes: int

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


def fetch_version(server: Server, ws: Workspace, ref: str) -> Fetched:
    """Bring the version `ref` names on the server here (see the module)."""
    try:
        info: dict[str, Any] = server.get(f"{PATH}/{quote(ref, safe='')}/files", retry=False)
    except NotFoundError as exc:
        raise UsageError(f"{exc.message} ({_existing(server, ref)})") from None
    except RuntimeUnavailableError as exc:  # nothing registered: the deploy stops here
        raise MllibError(f"{exc.message}; nothing was deployed") from None
    name, run_id = info["name"], info["run_id"]
    here = model_version_of(ws.registry, run_id)
    if here is not None:
        return Fetched(run_id, name, here["version"], info["version"], 0, 0)
    blobs = _Blobs(server, ws.store, f"{PATH}/{quote(name, safe='')}/versions/{info['version']}")
    sizes = {tree: blobs.tree(tree) for tree in (info["model_sha256"], info["code_hash"])}
    run = RunRecord(
        id=run_id,
        model=name,
        action="train",
        status="succeeded",
        created_at=info["created_at"],
        ended_at=info.get("ended_at"),
        model_file=info.get("model_file"),
        model_class=info.get("model_class"),
        code_hash=info["code_hash"],
        user=info.get("user"),
        runtime=RUNTIME,
        runtime_note=f"trained on the team server {server.url} (its {name}:{info['version']})",
    )
    reg = ws.registry
    with reg.transaction():
        create_run(reg, run, {}, {})
        add_artifact(
            reg, run_id, "model", "model", info["model_sha256"], sizes[info["model_sha256"]]
        )
        number = register_model(reg, name, run_id, info["model_sha256"], prefer=info["version"])
    return Fetched(run_id, name, number, info["version"], blobs.files, blobs.bytes)


class _Blobs:
    """The blobs of one server version this store lacks, fetched and checked."""

    def __init__(self, server: Server, store: BlobStore, path: str) -> None:
        self.server, self.store, self.path = server, store, path
        self.files = self.bytes = 0

    def tree(self, sha256: str) -> int:
        """Fetch tree `sha256` (its manifest, then its files); its size."""
        self.blob(sha256)
        tree = read_tree(self.store, sha256)
        for entry in tree.files:
            self.blob(entry.sha256)
        return tree.size

    def blob(self, sha256: str) -> None:
        if self.store.has(sha256):
            return
        data = self.server.request("GET", f"{self.path}/blobs/{sha256}").content
        if hashlib.sha256(data).hexdigest() != sha256:
            raise MllibError(
                f"The team server sent a file that does not match its hash {sha256[:12]}; "
                "nothing was registered: try again"
            )
        self.store.put_bytes(data, sha256=sha256)
        self.files += 1
        self.bytes += len(data)


def _existing(server: Server, ref: str) -> str:
    """What the server has instead of `ref`, in a few words."""
    from mllib.runs.model_choice import parse_ref

    name = parse_ref(ref).name
    try:
        shown = server.get(f"{PATH}/{quote(name, safe='')}")
        numbers = ", ".join(f"v{v['version']}" for v in shown.get("versions", []))
        return f"its versions of {name}: {numbers or 'none'}; see `mllib models list`"
    except MllibError:
        return "see `mllib models list`; this project's versions: --local"
