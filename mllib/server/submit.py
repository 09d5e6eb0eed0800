"""A submission: a run prepared by a client (params checked, code stored as a tree and uploaded)
recorded on the server with its job, in one transaction, and acknowledged only once committed.

The client names the run (its own record carries the same id) and sends an idempotency key: a
retried submission, after a timeout or a dropped connection, finds the job its first attempt made
and answers with it, never a second run. Everything the run needs travels in that one
transaction: its record and params, and its job with the worker's spec and the secrets it needs
(secret params given on the command line, the `.env.remote` values), which the dispatcher hands
to the agent and which the job drops when the run ends (mllib.queue.jobs.done). Nothing is
written to disk but the database, so an acknowledged run is whole after any crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mllib._version import __version__
from mllib.datasets.binding import DatasetUse, record_uses
from mllib.datasets.catalog import get_version, run_links
from mllib.datasets.refs import DatasetRef, check_name, env_var_for
from mllib.errors import MllibError, NotFoundError, UsageError
from mllib.plugins import REMOTE_RUNTIME
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.queue.jobs import Job, enqueue, find_by_key
from mllib.registry import Registry
from mllib.registry.runs import RunRecord, create_run, get_run, now
from mllib.server.accounts import User

RUN_ID = re.compile(r"^[0-9a-z]{8,32}$")
ACTIONS = ("train", "evaluate", "train+evaluate")


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
    env_plan: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)  # env, name, version each


@dataclass
class Accepted:
    run: RunRecord
    job: Job
    created: bool  # False: a retry of a submission already recorded
    position: tuple[int | None, float | None] = (None, None)  # place, estimated start (s)
    ahead: int | None = None  # its user's jobs queued before it, when known without a query


def submit(
    reg: Registry, store: Any, runs_dir: Any, user: User, sub: Submission, max_queued: int
) -> Accepted:
    """Record `sub` as a queued run of `user` with its job, or find the one its key made.

    A retry is told apart only when the submission is refused (its run id or key already
    taken, or a check it would now fail, a quota full since): the common case, a new
    submission, costs no look-up first."""
    try:
        return _record(reg, store, runs_dir, user, sub, max_queued)
    except Exception as exc:
        if not isinstance(exc, MllibError) and not _is_duplicate(exc):
            raise
        again = find_by_key(reg, user.name, sub.idempotency_key)  # a retry of one recorded
        if again is not None:
            return Accepted(get_run(reg, again.run_id), again, False)
        if isinstance(exc, MllibError):
            raise
        raise Conflict(
            f"Run id {sub.run_id} is taken", hint="Submit again: a new id is chosen."
        ) from None


def _record(
    reg: Registry, store: Any, runs_dir: Any, user: User, sub: Submission, max_queued: int
) -> Accepted:
    record, job = prepare(store, runs_dir, user, sub)
    datasets = dataset_uses(reg, sub.datasets)
    with reg.savepoint():  # a part of a group commit (mllib.server.commits), or alone
        create_run(reg, record, sub.params, sub.sources, set(sub.secret))
        record_uses(reg, sub.run_id, datasets)  # what the dispatcher sends its agent
        enqueue(reg, job, max_queued=max_queued, wake=False)  # notify: once per commit
    return Accepted(record, job, True)


def prepare(store: Any, runs_dir: Any, user: User, sub: Submission) -> tuple[RunRecord, Job]:
    """The run record and job `sub` makes, once it is found able to run (a UsageError
    otherwise); nothing is read from the database or written."""
    spec = _check(store, sub)
    folder = RunFolder(runs_dir / sub.run_id)
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
        sub.run_id,
        user.name,
        priority=sub.priority,
        gpus=sub.gpus,
        idem_key=sub.idempotency_key,
        spec=json.dumps(vars(spec)),  # JSON values already: no deep copy (asdict) needed
        secrets=json.dumps({"env": sub.env, "secret_params": sub.secret_params}),
        env_plan=json.dumps(sub.env_plan) if sub.env_plan is not None else None,
    )
    return record, job


def dataset_uses(reg: Registry, bindings: list[dict[str, Any]]) -> list[DatasetUse]:
    """The versions a submission binds (env, name, version each; datasets are the team's:
    mllib.server.datasets), or a usage error naming one this server does not hold."""
    found = []
    for binding in bindings:
        ref = DatasetRef(check_name(binding["name"]), int(binding["version"]))
        try:
            found.append(DatasetUse.of(env_var_for(binding["env"]), get_version(reg, ref)))
        except NotFoundError as exc:
            raise UsageError(f"{exc.message} on the team server", hint=exc.hint) from None
    return found


def _is_duplicate(exc: Exception) -> bool:
    """A unique key refused the insert (the run id, or the idempotency key)."""
    import sqlite3

    if isinstance(exc, sqlite3.IntegrityError):
        return True
    return type(exc).__name__ in ("UniqueViolation", "IntegrityError")


def _check(store: Any, sub: Submission) -> RunSpec:
    """Refuse what cannot run, before anything is written; the run's spec."""
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
        spec = RunSpec(**{**sub.spec, "run_id": sub.run_id})
    except TypeError as exc:
        raise UsageError(f"The run's spec is not valid: {exc}") from None
    if sub.env_plan is not None and not _valid_env_plan(sub.env_plan):
        raise UsageError(
            "The run's env_plan is not valid",
            hint="Send what mllib.runtime.env_plan.EnvPlan.to_json() gives, or leave it out.",
        )
    return spec


def _valid_env_plan(data: dict[str, Any]) -> bool:
    """Whether `data` is an environment plan an agent can build (EnvPlan.to_json's shape)."""
    from mllib.runtime.env_plan import STEPS, EnvPlan

    try:
        plan = EnvPlan.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return (
        plan.step in STEPS
        and isinstance(plan.python, str)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in plan.pins.items())
        and all(
            isinstance(r.text, str)
            and isinstance(r.origin, str)
            and all(isinstance(h, str) for h in r.hashes)
            for r in plan.requirements
        )
    )


def rerun_of(reg: Registry, original: RunRecord, body: dict[str, Any]) -> Submission:
    """A submission repeating `original`: its code tree, params and sources, seed, spec and
    resources; `body` gives the new run's id, key, env and secret params."""
    from mllib.queue.jobs import get_job
    from mllib.registry.runs import recorded_params

    job = get_job(reg, original.id)
    if job is None or not job.spec or not original.code_hash:
        raise UsageError(
            f"Run {original.id} was not queued on this server; it cannot be rerun here"
        )
    params = recorded_params(reg, original.id)
    spec = json.loads(job.spec)
    spec.pop("run_id", None)
    spec["gpus"] = None
    return Submission(
        run_id=body["run_id"],
        idempotency_key=body["idempotency_key"],
        model=original.model,
        action=original.action,
        model_class=original.model_class or original.model,
        model_file=original.model_file or "model.py",
        code_tree=original.code_hash,
        spec=spec,
        params=params.values,
        sources=params.sources,
        secret=sorted(params.secret),
        secret_params=body.get("secret_params") or {},
        env=body.get("env") or {},
        seed=original.seed or 0,
        params_hash=original.params_hash,
        gpus=job.gpus,
        priority=job.priority,
        source_run_id=original.source_run_id,
        rerun_of=original.id,
        env_plan=json.loads(job.env_plan) if job.env_plan else None,
        datasets=[  # exactly the versions the original read
            {"env": link["env"], "name": link["name"], "version": link["version"]}
            for link in run_links(reg, original.id)
        ],
    )


def job_secrets(job: Job) -> tuple[dict[str, str], dict[str, Any]]:
    """The env and secret params a queued job's run was submitted with ({} once it ended)."""
    data = json.loads(job.secrets or "{}")
    return data.get("env") or {}, data.get("secret_params") or {}
