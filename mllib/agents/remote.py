"""Starting one attempt of a recorded run on an agent: send what it lacks (code, input model,
the chunks of its datasets), then start it detached."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mllib.agents.rpc import AgentClient
from mllib.agents.transfer import send_blobs, send_tree
from mllib.datasets.binding import dataset_uses
from mllib.datasets.chunkstore import dataset_store
from mllib.datasets.format import human_bytes
from mllib.datasets.materialize import load_manifest
from mllib.errors import MllibError
from mllib.protocol.folder import RunFolder
from mllib.registry.artifacts import model_artifact
from mllib.registry.runs import RunRecord, recorded_params
from mllib.runs.job import param_variables
from mllib.runtime.env_plan import EnvPlan
from mllib.workspace import Workspace

# The run's own columns the agent records as they are here (paths and pids are its own).
RUN_FIELDS = (
    "id",
    "model",
    "action",
    "model_class",
    "model_file",
    "env_target",
    "user",
    "code_hash",
    "params_hash",
    "seed",
    "source_run_id",
    "rerun_of",
    "created_at",
)
SEND_TRIES = 3


def run_env(ws: Workspace, run: RunRecord) -> dict[str, str]:
    """The variables the run gets on the agent: its env file's (.env.remote), and for the
    variables its params read with `env=`, this environment's values, which win (as they did
    when the params were resolved here, and as for a local run)."""
    return {**ws.project.env_values(run.env_target or "remote"), **param_variables(ws, run)}


def send_datasets(
    ws: Workspace, run_id: str, agent: AgentClient
) -> tuple[list[dict[str, Any]], list[str]]:
    """Send the chunks (and manifests) of the run's dataset versions the agent's store lacks,
    through the agents' blob transfer (pipelined SFTP, hash-checked on arrival); returns the
    versions as the agent's `start` takes them, and one line per dataset saying what was sent.
    The agent materialises them itself (mllib.datasets.remote.materialize_on_agent)."""
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


def _env_plan(folder: RunFolder) -> dict[str, Any] | None:
    """The run's environment plan, made here when it was prepared (this machine's pins)."""
    plan = EnvPlan.read(folder.env_plan_file)
    return plan.to_json() if plan is not None else None


def start_on(
    ws: Workspace,
    run: RunRecord,
    agent: AgentClient,
    attempt: int,
    slots: int,
    *,
    gpus: int = 0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send the run's code (and input model) blobs and the chunks of its datasets the agent
    lacks, then ask it to start the run on one of its `slots` (and `gpus`, one GPU each).

    `env`: the run's variables when they did not come from this workspace (a team server
    passes those its client submitted); else `run_env`.

    Returns the agent's answer: `{"started": True, "runtime": ..., ...}` or `{"busy": True, ...}`.
    Should the agent's cache lose a blob between sending and starting (another start or a prune
    trimmed it), the agent says which and they are sent again.
    """
    if not run.code_hash:
        raise MllibError(f"Run {run.id} has no stored code snapshot to send")
    input_model = None
    if run.source_run_id:
        artifact = model_artifact(ws.registry, run.source_run_id)
        if artifact is None:
            raise MllibError(f"Run {run.source_run_id} has no saved model to evaluate")
        input_model = artifact["sha256"]
    folder = ws.run_folder(run)
    spec = folder.read_spec()
    params = recorded_params(ws.registry, run.id)
    fields = {name: getattr(run, name) for name in RUN_FIELDS}
    data_notes: list[str] = []
    for _ in range(SEND_TRIES):
        send_tree(agent, ws.store, run.code_hash)
        if input_model:
            send_tree(agent, ws.store, input_model)
        datasets, notes = send_datasets(ws, run.id, agent)
        data_notes = data_notes or notes
        answer = agent.call(
            "start",
            run={**fields, "attempt": attempt},
            params=params.values,
            sources=params.sources,
            secret=sorted(params.secret),
            secret_params=folder.read_secret_params(),
            spec=asdict(spec),
            code_tree=run.code_hash,
            input_model=input_model,
            env=run_env(ws, run) if env is None else env,
            datasets=datasets,
            slots=slots,
            gpus=gpus,
            agent=agent.spec.name,
            cache_bytes=agent.spec.cache_bytes,
            env_plan=_env_plan(folder),
            timeout=300,
        )
        if not answer.get("missing"):
            return {**answer, "data_notes": data_notes}
    raise MllibError(
        f"Agent {agent.spec.name} kept losing the run's files before it could start "
        f"({len(answer['missing'])} missing)",
        hint="Its cache is too small for the run: raise the agent's cache_gb.",
    )
