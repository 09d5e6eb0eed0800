"""The team server's request and answer bodies (pydantic): they are the OpenAPI document at
/openapi.json and /docs, and FastAPI checks every request against them (a malformed one is a 422
saying which field is wrong)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SHA256 = r"^[0-9a-f]{64}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecBody(Strict):
    """The worker's RunSpec (mllib.protocol.spec), as the client prepared it."""

    run_id: str | None = Field(None, max_length=64)
    actions: list[str] = Field(..., min_length=1, max_length=3)
    model_file: str = Field(..., min_length=1, max_length=1024)
    model_class: str = Field(..., min_length=1, max_length=256)
    cli_params: dict[str, Any] = Field(default_factory=dict)
    config_params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    input_model: str | None = Field(None, max_length=256)
    gpus: list[str] | None = None
    param_env: list[str] | None = None
    python: str | None = Field(None, max_length=64, description="The submitting machine's Python")


class DatasetBinding(Strict):
    """A dataset version a run reads, and the env variable its path arrives in."""

    env: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", examples=["TRAIN_DATA"])
    name: str = Field(..., min_length=1, max_length=100)
    version: int = Field(..., ge=1, le=2**31)


class SubmissionBody(Strict):
    """A run to queue. `run_id` names it (the client records it under the same id);
    `idempotency_key` makes a retried submission answer with the run the first one made."""

    run_id: str = Field(..., pattern=r"^[0-9a-z]{8,32}$")
    idempotency_key: str = Field(..., min_length=8, max_length=128)
    model: str = Field(..., min_length=1, max_length=256)
    action: str = Field(..., pattern=r"^(train|evaluate|train\+evaluate)$")
    model_class: str = Field(..., min_length=1, max_length=256)
    model_file: str = Field(..., min_length=1, max_length=1024)
    code_tree: str = Field(..., pattern=SHA256, description="The code snapshot's tree (uploaded)")
    spec: SpecBody
    params: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    secret: list[str] = Field(default_factory=list, max_length=1000)
    secret_params: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict, description="The run's .env.remote values")
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)
    params_hash: str | None = Field(None, max_length=64)
    gpus: int = Field(1, ge=0, le=64)
    priority: int = Field(0, ge=-1000, le=1000)
    source_run_id: str | None = Field(None, max_length=64)
    rerun_of: str | None = Field(None, max_length=64)
    env_plan: dict[str, Any] | None = Field(
        None, description="What the run's venv or image holds, planned on the submitting machine"
    )
    datasets: list[DatasetBinding] = Field(
        default_factory=list,
        max_length=100,
        description="Dataset versions of this server the run reads (the dispatcher sends its "
        "agent the chunks it lacks)",
    )


class SubmittedRun(BaseModel):
    id: str
    status: str
    created: bool = Field(..., description="False when this answers a retried submission")
    position: int | None = Field(None, description="Place in the queue (1: next)")
    estimated_start_s: float | None = None


class Shas(Strict):
    shas: list[str] = Field(..., max_length=100_000)


class Missing(BaseModel):
    missing: list[str]


UPLOAD_ID = r"^[0-9a-f]{32}$"
UPLOAD_FIELD = Field(
    None,
    pattern=UPLOAD_ID,
    description="The upload's id (POST /datasets/uploads): the chunks are pinned to its lease",
)


class ChunkShas(Shas):
    upload: str | None = UPLOAD_FIELD


class DatasetCheck(Strict):
    """An upload about to start: refused (409, 413) before anything is sent."""

    name: str = Field(..., min_length=1, max_length=100)
    size: int | None = Field(None, ge=0, description="Bytes, when known (not for a URL)")


class UploadStarted(BaseModel):
    upload: str = Field(..., description="Sent with the upload's requests (`upload`)")
    expire_s: float = Field(..., description="How long the lease outlives its last request")


class DatasetRecord(Strict):
    """A version to record once its manifest and chunks are uploaded."""

    name: str = Field(..., min_length=1, max_length=100)
    manifest: str = Field(..., pattern=SHA256, description="The manifest's sha256 (uploaded)")
    source: str | None = Field(None, max_length=4096, description="The path or URL uploaded")
    upload: str | None = UPLOAD_FIELD


class DatasetVersion(BaseModel):
    """A version with `mllib data list --json`'s keys."""

    name: str
    version: int
    ref: str
    sha256: str
    kind: str
    size: int
    file_count: int
    chunk_count: int
    source: str | None
    created_at: str
    user: str | None


class DatasetListed(DatasetVersion):
    versions: int = Field(..., description="How many versions the dataset has")


class DatasetRecorded(DatasetListed):
    created: bool = Field(..., description="False: the latest version already held this content")


class RerunBody(Strict):
    """A rerun of one of your runs: its recorded code, params, seed and spec, under a new id.
    `env` and `secret_params` are given again (a run's secrets are not kept once it ends)."""

    run_id: str = Field(..., pattern=r"^[0-9a-z]{8,32}$")
    idempotency_key: str = Field(..., min_length=8, max_length=128)
    env: dict[str, str] = Field(default_factory=dict)
    secret_params: dict[str, Any] = Field(default_factory=dict)


class ScheduleBody(Strict):
    """Repeat one of your evaluation runs every period (`mllib schedules add`), or evaluate the
    version a model name means at each period (`mllib evaluate --model NAME@ALIAS --every`):
    give one of `run_id` and `model`."""

    run_id: str | None = Field(
        None, pattern=r"^[0-9a-z]{8,32}$", description="The evaluation repeated"
    )
    model: str | None = Field(
        None,
        max_length=200,
        examples=["iris@prod"],
        description="NAME, NAME:VERSION or NAME@ALIAS, resolved on the server at each run",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        max_length=200,
        description="The `.env.remote` values each run gets: kept sealed, never answered",
    )
    every: str = Field(..., max_length=16, examples=["1d"], description="30m, 6h, 1d or 1w")
    gates: dict[str, float] = Field(default_factory=dict, description="--fail-under thresholds")
    data: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="--data as given: KEY=NAME reads the newest version each time, "
        "KEY=NAME@VERSION that one",
    )


class CompareBody(Strict):
    run_ids: list[str] = Field(..., min_length=2, max_length=100)


class RunIdsBody(Strict):
    run_ids: list[str] = Field(..., min_length=1, max_length=100)


class Whoami(BaseModel):
    name: str
    admin: bool
    server: str


class AgentRun(BaseModel):
    """A running run that holds some of an agent's slots."""

    run_id: str | None = Field(..., description="Its id: yours, or everyone's for admins")
    user: str
    gpus: int


class Agent(BaseModel):
    """One of the server's agents (no key, no key path)."""

    name: str
    address: str = Field(..., description="user@host:port")
    gpus: int | None = Field(..., description="Its GPUs: configured, else detected (None: not yet)")
    slots: int = Field(..., description="Runs it takes at once: its GPUs, at least one")
    used: int = Field(..., description="Slots its running runs hold")
    running: list[AgentRun]
    reachable: bool | None = Field(
        ..., description="Whether it answered when last asked (None: not asked since the start)"
    )
    problem: str | None = Field(None, description="Why it did not answer")
    checked_at: str | None = Field(None, description="When it was last asked (ISO 8601, UTC)")


class Error(BaseModel):
    error: str
    hint: str | None = None


class ChunksMissing(Error):
    missing: list[str] = Field(..., description="The chunks to send again, then record again")
