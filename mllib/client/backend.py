"""The server backend: runs recorded with the `server` runtime are queued on a team server and
followed from here. The CLI's side of a server-mode run is this one Backend subclass.

Submitting uploads the blobs of the run's code tree the server lacks, then posts the run (the
same id as the local record, an idempotency key, params, spec, the `.env.remote` values and
secret params given on the command line) and returns once the server acknowledged it durably,
with its place in the queue. Following reads the server's log from an offset and mirrors the
run's status into the local record; Ctrl-C detaches (the run goes on there); cancelling asks the
server. The server, not this machine, is where the run's truth lives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.client.http import Server
from mllib.datasets.catalog import run_links
from mllib.errors import UsageError
from mllib.protocol.failure import Outcome
from mllib.registry.runs import RunRecord, finish_run, get_run, recorded_params, update_run
from mllib.runs.backend import Backend, CancelFlag, Echo, OnInterrupt, Supervision
from mllib.workspace import Workspace

if TYPE_CHECKING:
    from mllib.datasets.binding import Lookup
    from mllib.store import LocalBlobStore

POLL_S = 0.5


@dataclass
class Following:
    """A run being followed on the server: the connection, how much of its log is shown and
    which of its metric points are recorded here (`seq`: the last one)."""

    server: Server
    offset: int = 0
    status: str = "queued"
    seq: int = 0


def pull_points(server: Server, ws: Workspace, run_id: str, after: int) -> int:
    """Record here the run's metric points the server logged after seq `after` (a tuning
    study's pruner reads them as the run goes); the last seq now held."""
    from mllib.client.views import metric_points
    from mllib.metric_values import to_stored
    from mllib.registry.metrics import insert_points

    while True:
        points = metric_points(server, run_id, after)
        if not points:
            return after
        insert_points(
            ws.registry,
            run_id,
            [(seq, name, step, to_stored(v), 0.0) for seq, name, step, v in points],
        )
        after = points[-1][0]


def upload_tree(server: Server, store: LocalBlobStore, tree_sha: str) -> int:
    """Send the blobs of a stored tree the server lacks (its files, then the manifest); how many."""
    from mllib.store.trees import read_tree

    tree = read_tree(store, tree_sha)
    shas = [*(f.sha256 for f in tree.files), tree_sha]
    missing = server.post("/api/v1/blobs/missing", {"shas": shas})["missing"]
    for sha in missing:
        server.request("PUT", f"/api/v1/blobs/{sha}", content=store.get_bytes(sha))
    return len(missing)


def submission(ws: Workspace, run: RunRecord, queue: Mapping[str, int] | None) -> dict[str, Any]:
    """The body of `POST /api/v1/runs` for a locally prepared run."""
    from mllib.runs.job import param_variables

    folder = ws.run_folder(run)
    params = recorded_params(ws.registry, run.id)
    env = {**ws.project.env_values("remote"), **param_variables(ws, run)}
    return {
        "run_id": run.id,
        "idempotency_key": f"submit-{run.id}",
        "model": run.model,
        "action": run.action,
        "model_class": run.model_class,
        "model_file": run.model_file,
        "code_tree": run.code_hash,
        "spec": asdict(folder.read_spec()),
        "params": params.values,
        "sources": params.sources,
        "secret": sorted(params.secret),
        "secret_params": folder.read_secret_params(),
        "env": env,
        "seed": run.seed or 0,
        "params_hash": run.params_hash,
        "source_run_id": run.source_run_id,
        "rerun_of": run.rerun_of,
        "env_plan": _env_plan(folder.env_plan_file),
        "datasets": [  # versions of the server's catalog (ServerBackend.dataset_lookup)
            {"env": link["env"], "name": link["name"], "version": link["version"]}
            for link in run_links(ws.registry, run.id)
        ],
        **(queue or {}),
    }


def _env_plan(path: Path) -> dict[str, Any] | None:
    """The run's environment plan, made here when it was prepared (this machine's pins)."""
    from mllib.runtime.env_plan import EnvPlan

    plan = EnvPlan.read(path)
    return plan.to_json() if plan is not None else None


def queued_note(answer: dict[str, Any], url: str) -> str:
    where = f"run {answer['id']} queued on {url}"
    if answer.get("position") is not None:
        where += f": position {answer['position']}"
    if answer.get("estimated_start_s") is not None:
        where += f", estimated start in {answer['estimated_start_s']:.0f} s"
    return where


class ServerBackend(Backend[Following]):
    """Runs queued on the team server (mllib.credentials: which one)."""

    name = "server"
    can_detach = True
    keeps_secret_params = True

    def check_placement(self, ws: Workspace, pin: str | None) -> None:
        if pin is not None:
            raise UsageError(
                "Runs on the team server are placed by its scheduler, not pinned to an agent",
                hint="Drop --agent.",
            )
        Server.connect(ws.project.config).close()  # logged in? (before anything is recorded)

    def submit(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        detach: bool = False,
        echo: Echo | None = None,
        on_interrupt: OnInterrupt | None = None,
        on_prepared: Callable[[RunRecord], None] | None = None,
        pin: str | None = None,
        flag: CancelFlag | None = None,
        queue: Mapping[str, int] | None = None,
    ) -> RunRecord:
        """Queue the run on the server (acknowledged durably), then follow it here unless
        `detach`: Ctrl-C detaches, the run goes on there. A caller that stops runs itself gives
        `flag` (a tuning study pruning a trial): its request cancels the run on the server,
        taken out of the queue or stopped on its agent."""
        self.check_placement(ws, pin)
        server = Server.connect(ws.project.config)
        try:
            if run.code_hash:
                upload_tree(server, ws.store, run.code_hash)
            answer = server.post("/api/v1/runs", submission(ws, run, queue))
        except BaseException:
            finish_run(ws.registry, run.id, "failed", "system_error", "not submitted to the server")
            ws.run_folder(run).discard_secret_params()
            raise
        finally:
            server.close()
        update_run(ws.registry, run.id, host=server.url, supervisor_pid=None)
        ws.run_folder(run).discard_secret_params()  # they are on the server now
        if on_prepared is not None:
            on_prepared(run)
        self._notify(queued_note(answer, server.url))
        if detach:
            return get_run(ws.registry, run.id)
        if flag is not None:
            return self.supervise(ws, run, echo=echo, on_interrupt=on_interrupt, flag=flag)
        return self.supervise(ws, run, echo=echo, on_interrupt=lambda: "detach")

    def dataset_lookup(self, ws: Workspace) -> Lookup:
        """`--data` names versions of the server's catalog (mllib.client.datasets)."""
        from mllib.client.datasets import lookup

        return lookup(ws.project.config)

    def _notify(self, line: str) -> None:
        from mllib.terminal import notice

        notice(line)

    def _start(self, ctx: Supervision) -> Following:
        return Following(Server.connect(ctx.ws.project.config, url=ctx.run.host))

    def _poll(self, ctx: Supervision, follow: Following) -> bool:
        from mllib.client.views import read_log

        chunk = read_log(follow.server, ctx.run.id, offset=follow.offset)
        if chunk.data:
            ctx.show(chunk.data)
            follow.offset = chunk.end
        status = chunk.status or follow.status
        if status != follow.status:
            follow.status = status
            if status == "running":
                update_run(ctx.ws.registry, ctx.run.id, status="running")
        if status != "queued":
            follow.seq = pull_points(follow.server, ctx.ws, ctx.run.id, follow.seq)
        if status in ("succeeded", "failed", "cancelled"):
            return True
        ctx.sleep(POLL_S)
        return False

    def _stop(self, ctx: Supervision, follow: Following, grace_s: float) -> None:
        follow.server.post(f"/api/v1/runs/{ctx.run.id}/cancel")

    def _cancel_before_start(self, ctx: Supervision) -> RunRecord:
        """Cancelled before it was followed: taken out of the server's queue (or stopped on its
        agent, should it have started meanwhile), then recorded here as it ended there."""
        server = Server.connect(ctx.ws.project.config, url=ctx.run.host)
        try:
            server.post(f"/api/v1/runs/{ctx.run.id}/cancel")
            return self._mirror(ctx, server)
        finally:
            server.close()

    def _finish(self, ctx: Supervision, follow: Following, cancelled: bool) -> RunRecord:
        return self._mirror(ctx, follow.server, follow.seq)

    def _close(self, ctx: Supervision, follow: Following) -> None:
        follow.server.close()

    def _mirror(self, ctx: Supervision, server: Server, seq: int = 0) -> RunRecord:
        """Record here how the run ended there: status, failure, evaluation, its metric points
        (those after `seq`, the last one recorded here already)."""
        from mllib.registry.metrics import set_eval_metrics

        data = server.get(f"/api/v1/runs/{ctx.run.id}")
        pull_points(server, ctx.ws, ctx.run.id, seq)
        reg = ctx.ws.registry
        with reg.transaction():
            set_eval_metrics(reg, ctx.run.id, data.get("eval_metrics") or {})
            update_run(reg, ctx.run.id, started_at=data.get("started_at"))
        outcome = Outcome(data["status"], data.get("failure_class"), data.get("error") or "")
        return self._record(ctx, outcome)

    def _cancel_unsupervised(self, ws: Workspace, run: RunRecord) -> None:
        server = Server.connect(ws.project.config, url=run.host)
        try:
            data = server.post(f"/api/v1/runs/{run.id}/cancel")
        finally:
            server.close()
        finish_run(
            ws.registry, run.id, data["status"], data.get("failure_class"), data.get("error")
        )

    def _orphaned(self, ws: Workspace, run: RunRecord) -> bool:
        return False  # it goes on on the server; nothing here to end

    def _supervisor(self, ws: Workspace, run: RunRecord) -> int | None:
        return super()._supervisor(ws, run)
