"""Shipping a run to Ray nodes that do not share this machine's files, with Ray's own mechanism.

What goes, as the job's runtime_env:
- `working_dir`: one package per attempt, uploaded to the head (its GCS) as
  `gcs://_ray_pkg_<hash>.zip`: the run's code (Job.code_files: the files its code snapshot
  holds), the run folder's inputs (the spec, the model evaluate and predict load, the request,
  and the run's variables and secret params in 0600 files that the node takes out as it starts)
  and a manifest for the node (mllib.runtime.ray.node).
- `py_modules`: each data path (Job.data_mounts: datasets, files named by variables) as its own
  package, named by its content: a package the head already holds is not sent again, by this
  run or any later one (Ray dedupes by the same name).

What comes back: the job's log carries the worker's output, then records (channel.py) of each
event as it is written and, at the end, the model, artifacts and prediction; `Collector` takes
them out of the stream into the run folder here. Ray refuses a package over 512 MiB (its GCS
message size): a larger data path is an error saying so, before anything is sent.

Secrets: the working_dir package holds the run's variables (never Ray's job table, which
anyone with the cluster's token can list); Ray deletes the package once no job uses it, and
the node removes them from its unpacked copy as the worker starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mllib.protocol.folder import RunFolder
from mllib.runtime.base import Job
from mllib.runtime.ray.channel import END, EVENT, OUTPUTS, Reader
from mllib.runtime.ray.client import RayUnavailable, first_line
from mllib.runtime.ray.node import CODE, MANIFEST, RUN

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

MAX_PACKAGE_BYTES = 512 * 1024 * 1024  # Ray's GCS_STORAGE_MAX_SIZE (its gRPC message limit)
INPUTS = (RunFolder.SPEC, "input")  # what of the run folder the worker reads


@contextmanager
def shipped(
    client: JobSubmissionClient,
    job: Job,
    variables: dict[str, str],
    nonce: str,
    max_output_bytes: int,
) -> Iterator[dict[str, Any]]:
    """The runtime_env entries that ship `job` (uploaded now), and the node's entrypoint."""
    paths = {**job.data_mounts, **left_out_of_code(job, variables)}
    data = {name: upload_path(client, name, path) for name, path in paths.items()}
    folder = RunFolder(job.run_dir)
    with tempfile.TemporaryDirectory(prefix="mllib-ship-") as tmp:
        root = Path(tmp)
        _copy_code(job, root / CODE)
        staged = RunFolder(root / RUN)
        for name in INPUTS:
            source = folder.path / name
            if source.is_dir():
                shutil.copytree(source, staged.path / name)
            elif source.is_file():
                staged.path.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, staged.path / name)
        staged.write_job_env(variables)
        staged.write_secret_params(folder.read_secret_params(remove=True))
        (root / MANIFEST).write_text(
            json.dumps(
                {
                    "nonce": nonce,
                    "run_id": job.run_id,
                    "data": data,
                    "max_output_bytes": max_output_bytes,
                }
            ),
            encoding="utf-8",
        )
        uri = _upload(client, root, "the run's code and inputs", parent=False)
        modules = [entry["uri"] for entry in data.values()]
        yield {"working_dir": uri, **({"py_modules": modules} if modules else {})}


def left_out_of_code(job: Job, variables: dict[str, str]) -> dict[str, Path]:
    """The variables naming, by a path relative to the project, a file or folder that the run's
    code leaves out (ignored, `[code] exclude`, over `[code] max_file_mb`): the node has no
    project to find it in, so it travels as data, like a path outside the project."""
    root = job.work_dir.resolve()
    code = set(job.code_files) if job.code_files is not None else None
    found = {}
    for name, value in variables.items():
        if name in job.data_mounts or not value or "\0" in value or Path(value).is_absolute():
            continue
        try:
            path = (root / value).resolve()
            inside = path.is_relative_to(root) and path != root and path.exists()
        except (OSError, RuntimeError, ValueError):
            continue
        if inside and not _in_code(job, code, path.relative_to(root)):
            found[name] = path
    return found


def _in_code(job: Job, code: set[str] | None, relative: Path) -> bool:
    """Whether every file of the project's `relative` is in the code the job ships."""
    if code is None:  # a stored snapshot, copied whole
        return (job.code_dir / relative).exists()
    source = job.work_dir / relative
    if source.is_file():
        return relative.as_posix() in code
    return all(
        f.relative_to(job.work_dir).as_posix() in code for f in source.rglob("*") if f.is_file()
    )


def _copy_code(job: Job, target: Path) -> None:
    if job.code_files is None:
        shutil.copytree(job.code_dir, target, symlinks=False)
        return
    for name in job.code_files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(job.code_dir / name, target / name)
    target.mkdir(parents=True, exist_ok=True)


def upload_path(client: JobSubmissionClient, variable: str, path: Path) -> dict[str, str]:
    """Upload a data file or folder as a package unless the head holds it: its URI and name."""
    from ray._private.runtime_env.packaging import get_uri_for_directory, get_uri_for_file

    content = (
        get_uri_for_directory(str(path), False) if path.is_dir() else get_uri_for_file(str(path))
    )
    # Ray's hash is of the contents alone; the name is part of what the node finds.
    digest = hashlib.sha1(f"{path.name}\0{content}".encode()).hexdigest()
    uri = f"gcs://_ray_pkg_{digest}.zip"
    if not client._package_exists(uri):
        _upload(client, path, f"{variable} ({path})", parent=path.is_dir(), uri=uri)
    return {"uri": uri, "name": path.name}


def _upload(
    client: JobSubmissionClient, path: Path, what: str, *, parent: bool, uri: str | None = None
) -> str:
    """Upload `path` as one package (named by its content unless `uri`); returns its URI."""
    size = _size(path)
    if size >= MAX_PACKAGE_BYTES:
        raise RayUnavailable(
            f"{what} is {size / 2**20:.0f} MiB, over the {MAX_PACKAGE_BYTES // 2**20} MiB a "
            "Ray package may hold",
            hint='Give the nodes a filesystem that holds it ([ray] files = "shared"), or '
            "leave large files out of the code ([code] exclude) and read them as datasets.",
        )
    try:
        if uri is None:
            return client._upload_package_if_needed(str(path), include_gitignore=False)
        client._upload_package(uri, str(path), include_gitignore=False, include_parent_dir=parent)
        return uri
    except Exception as exc:
        raise RayUnavailable(f"could not upload {what} to the Ray head: {first_line(exc)}") from exc


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Collector:
    """Takes a shipped attempt's records out of its log: events into the run folder's events
    file as they come, outputs spooled to a file there and unpacked once whole. More than
    `limit` bytes of outputs (a node that did not keep to `[ray] max_output_mb`) are not kept."""

    def __init__(self, folder: RunFolder, nonce: str, limit: int) -> None:
        self.folder = folder
        self.reader = Reader(nonce)
        self.limit = limit
        self.spool: IO[bytes] | None = None
        self.received = 0
        self.damaged: str | None = None
        self.complete = False  # the node's last record (END) has come
        self.partial = ""  # base64 characters of a group the next chunk completes

    def feed(self, text: str) -> str:
        """The worker's output in `text`; its records applied."""
        out, records = self.reader.feed(text)
        events = [payload for kind, payload in records if kind == EVENT]
        if events:
            with open(self.folder.events_file, "a", encoding="utf-8") as handle:
                handle.write("".join(f"{line}\n" for line in events))
        for kind, payload in records:
            if kind == OUTPUTS:
                self._keep(payload)
            elif kind == END:
                out += self._unpack()
                self.complete = True
        return out

    def _keep(self, chunk: Any) -> None:
        """Decode a chunk as it comes (whole 4-character groups; the rest waits for the next)."""
        if self.damaged:
            return
        text = self.partial + str(chunk)
        whole = len(text) - len(text) % 4
        self.partial = text[whole:]
        try:
            data = base64.b64decode(text[:whole], validate=True)
        except (binascii.Error, ValueError) as exc:
            self.damaged = f"a chunk is not base64 ({exc})"
            return
        self.received += len(data)
        if self.received > self.limit:
            self.damaged = f"they are over [ray] max_output_mb ({self.limit / 1e6:g} MB)"
            return
        if self.spool is None:
            self.spool = tempfile.TemporaryFile(dir=self.folder.path)  # noqa: SIM115 - closed in _unpack
        self.spool.write(data)

    def flush(self) -> str:
        return self.reader.flush()

    def _unpack(self) -> str:
        """Unpack the outputs; a line for the log when they cannot be (the run then lacks them,
        and storing them fails it as a system error)."""
        spool, self.spool, damaged, self.damaged = self.spool, None, self.damaged, None
        if self.partial and not damaged:
            damaged = f"they end in {len(self.partial)} stray base64 characters"
        self.received, self.partial = 0, ""
        try:
            if damaged:
                return f"mllib: the job's outputs were not kept: {damaged}\n"
            if spool is None:
                return "mllib: the job's outputs came back empty\n"
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:gz") as tar:
                tar.extractall(self.folder.path, filter="data")
        except (tarfile.TarError, OSError) as exc:
            return f"mllib: the job's outputs came back damaged: {exc}\n"
        finally:
            if spool is not None:
                spool.close()
        return ""
