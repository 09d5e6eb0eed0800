"""A submission: a run prepared by a client (params checked, code stored as a tree and uploaded)
recorded on the server with its job, in one transaction, and acknowledged only once committed.

The client names the run (its own record carries the same id) and sends an idempotency key: a
retried submission, after a timeout or a dropped connection, finds the job its first attempt made
and answers with it, never a second run. Secrets the run needs (secret params given on the
command line, the `.env.remote` values) go to the run's folder on the server (0600) for the
dispatcher to hand to the agent, and leave with the run (mllib.server.dispatch).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from mllib._version import __version__
from mllib.errors import MllibError, UsageError
from mllib.filemodes import write_private
from mllib.plugins import REMOTE_RUNTIME
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.queue.jobs import Job, enqueue, find_by_key
from mllib.registry import Registry
from mllib.registry.runs import RunRecord, create_run, get_run, now
from mllib.server.accounts import User

RUN_ID = re.compile(r"^[0-9a-z]{8,32}$")
ACTIONS = ("train", "evaluate", "train+evaluate")
ENV_FILE = "submitted.env.json"  # the run's environment from the client (0600, removed at its end)


class Conflict(MllibError):
    """The submission names a run that exists and is not the one its key made."""


@dataclass
class Submission:
    """What `POST /api/v1/runs` takes (mllib.server.api documents each field)."""

    run_id: str
    idempotency_key: str
    model: str
    action: str
    model_class: str
    model_file: str
    code_tree: str
    spec: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    secret: list[str] = field(default_factory=list)
    secret_params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    params_hash: str | None = None
    gpus: int = 1
    priority: int = 0
    source_run_id: str | None = None
    rerun_of: str | None = None


@dataclass
class Accepted:
    run: RunRecord
    job: Job
    created: bool  # False: a retry of a submission already recorded


def submit(
    reg: Registry, store: Any, runs_dir: Any, user: User, sub: Submission, max_queued: int
) -> Accepted:
    """Record `sub` as a queued run of `user` with its job, or find the one its key made."""
    existing = find_by_key(reg, user.name, sub.idempotency_key)
    if existing is not None:
        return Accepted(get_run(reg, existing.run_id), existing, False)
    _check(store, sub)
    folder = RunFolder(runs_dir / sub.run_id)
    if folder.path.exists() and reg.query("SELECT id FROM runs WHERE id = ?", (sub.run_id,)):
        raise Conflict(f"Run id {sub.run_id} is taken", hint="Submit again: a new id is chosen.")
    spec = RunSpec(**{**sub.spec, "run_id": sub.run_id})
    record = RunRecord(
        id=sub.run_id,
        model=sub.model,
        action=sub.action,
        status="queued",
        created_at=now(),
        model_class=sub.model_class,
        model_file=sub.model_file,
        runtime=REMOTE_RUNTIME,
        runtime_note="queued on the team server",
        env_target="remote",
        user=user.name,
        code_hash=sub.code_tree,
        params_hash=sub.params_hash,
        seed=sub.seed,
        source_run_id=sub.source_run_id,
        rerun_of=sub.rerun_of,
        run_dir=str(folder.path),
        log_path=str(folder.log_file),
        attempt=1,
        mllib_version=__version__,
    )
    job = Job(
        sub.run_id, user.name, priority=sub.priority, gpus=sub.gpus, idem_key=sub.idempotency_key
    )
    try:
        spec.write(folder.path)
        folder.write_secret_params(sub.secret_params)
        write_private(folder.path / ENV_FILE, json.dumps(sub.env))
        with reg.transaction():
            create_run(reg, record, sub.params, sub.sources, set(sub.secret))
            enqueue(reg, job, max_queued=max_queued)
    except BaseException:
        shutil.rmtree(folder.path, ignore_errors=True)
        raise
    return Accepted(record, job, True)


def _check(store: Any, sub: Submission) -> None:
    """Refuse what cannot run, before anything is written."""
    if not RUN_ID.match(sub.run_id):
        raise UsageError(f"Invalid run id {sub.run_id!r}: 8 to 32 lower-case letters and digits")
    if sub.action not in ACTIONS:
        raise UsageError(f"Unknown action {sub.action!r}", hint=f"One of: {', '.join(ACTIONS)}.")
    if not re.fullmatch(r"[0-9a-f]{64}", sub.code_tree) or not store.has(sub.code_tree):
        raise UsageError(
            "The run's code is not on the server",
            hint="Upload its blobs first (POST /api/v1/blobs/missing, PUT /api/v1/blobs/SHA).",
        )
    if not 0 <= sub.gpus <= 64:
        raise UsageError(f"gpus must be between 0 and 64, got {sub.gpus}")
    if set(sub.secret_params) - set(sub.secret):
        raise UsageError("secret_params names params that are not listed in secret")
    try:
        RunSpec(**{**sub.spec, "run_id": sub.run_id})
    except TypeError as exc:
        raise UsageError(f"The run's spec is not valid: {exc}") from None


def read_env(folder: RunFolder) -> dict[str, str] | None:
    """The environment a client submitted the run with, while the run lasts (None: none)."""
    path = folder.path / ENV_FILE
    if not path.is_file():
        return None
    values: dict[str, str] = json.loads(path.read_text())
    return values


def discard_secrets(folder: RunFolder) -> None:
    """The run ended: its submitted environment and secret params go."""
    (folder.path / ENV_FILE).unlink(missing_ok=True)
    folder.discard_secret_params()
