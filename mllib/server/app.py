"""The team server's HTTP API (FastAPI): every route a thin layer over a library function.

Requests carry `Authorization: Bearer TOKEN` (mllib.server.accounts); each user sees and cancels
only their own runs, admins everyone's. Errors are JSON `{"error", "hint"}` with the status the
CLI turns back into its exit code: 400 bad input, 401 no valid token, 404 no such run (or not
yours), 409 a conflicting id, 413 too large, 422 a malformed body, 429 over a quota (with
Retry-After), 503 the database is unreachable (with Retry-After).
"""

import time
from typing import TYPE_CHECKING, Annotated, Any

from mllib.datasets.errors import ChunksMissingError, DatasetTooLargeError
from mllib.errors import MllibError, NotFoundError, UsageError
from mllib.metric_values import json_safe
from mllib.queue.jobs import QuotaExceeded
from mllib.server import api
from mllib.server.accounts import AuthError, User, authenticate, revoke_token
from mllib.server.dataset_routes import add_routes as add_dataset_routes
from mllib.server.models import add_routes as add_model_routes
from mllib.server.receiving import BlobTooLarge, check_shas, read_blob
from mllib.server.studies import add_routes as add_study_routes
from mllib.server.submit import Accepted, Conflict, Submission
from mllib.server.tokencache import TokenCache

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mllib.registry.db import Registry
    from mllib.server.context import ServerContext
    from mllib.server.dispatch import Dispatcher

PREFIX = "/api/v1"
STATUS = {
    AuthError: 401,
    NotFoundError: 404,
    Conflict: 409,
    ChunksMissingError: 409,
    DatasetTooLargeError: 413,  # before UsageError, which these are
    BlobTooLarge: 413,
    QuotaExceeded: 429,
    UsageError: 400,
}
MEAN_TTL_S = 10.0
ROUND_TTL_S = 1.0  # a submission's answered place reads the fair share's round this stale at most
AUTH_TTL_S = 1.0


def create_app(ctx: "ServerContext", dispatcher: "Dispatcher | None" = None) -> "FastAPI":
    """The API of the server `ctx` describes; `dispatcher` cancels running runs on agents."""
    from fastapi import Depends, FastAPI, Path, Query, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    app = FastAPI(
        title="mllib team server",
        version="1",
        description="Submit runs to a shared queue, follow them, and upload their code and data.",
        responses={code: {"model": api.Error} for code in (400, 401, 404, 429, 503)},
    )
    from mllib.server.commits import GroupCommit

    bearer = HTTPBearer(auto_error=False)
    mean_cache: dict[str, float | None] = {}
    round_cache: dict[str, Any] = {}

    def look_up(token: str) -> User:
        with ctx.registry() as reg:
            return authenticate(reg, token)

    tokens = TokenCache(AUTH_TTL_S, look_up)
    app.state.tokens = tokens

    @app.exception_handler(MllibError)
    def _known(request: Request, exc: MllibError) -> JSONResponse:
        status, body, headers = error_answer(exc)
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(Exception)
    def _database_down(request: Request, exc: Exception) -> JSONResponse:
        if _is_connection_error(exc):
            status, body, headers = error_answer(exc)
            return JSONResponse(body, status, headers=headers)
        raise exc

    Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    async def user(credentials: Credentials) -> User:
        """The request's user. A token checked in the last AUTH_TTL_S is not looked up again,
        nor is a thread taken for it (a token revoked through this server is refused at once;
        one revoked or a user disabled elsewhere, by `mllib server users`, within AUTH_TTL_S)."""
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise AuthError(
                "This server needs a login token", hint="Log in with `mllib login URL`."
            )
        return await tokens.user(credentials.credentials)

    Who = Annotated[User, Depends(user)]
    add_study_routes(app, ctx, user, PREFIX)  # tuning studies' journals (mllib.server.studies)
    add_model_routes(
        app, ctx, user, PREFIX
    )  # model versions and their trends (mllib.server.models)
    add_dataset_routes(app, ctx, user, PREFIX)  # uploads and the catalog (mllib.server.datasets)

    def own_run(reg: "Registry", who: User, run_id: str) -> Any:
        from mllib.registry.runs import get_run

        run = get_run(reg, run_id)
        if run.user != who.name and not who.admin:
            raise NotFoundError(
                f"No run {run_id!r} among yours", hint="List yours with `mllib runs list`."
            )
        return run

    def mean_s(reg: "Registry") -> float | None:
        from mllib.queue.views import mean_duration_s

        if time.monotonic() - mean_cache.get("at", -1e9) > MEAN_TTL_S:  # type: ignore[operator]
            mean_cache["value"] = mean_duration_s(reg)
            mean_cache["at"] = time.monotonic()
        return mean_cache.get("value")

    def fair_round(reg: "Registry") -> Any:
        from mllib.queue.views import current_round

        if time.monotonic() - round_cache.get("at", -1e9) > ROUND_TTL_S:
            round_cache["value"] = current_round(reg)
            round_cache["slots"] = capacity()  # the fleet's slots (its agents read from mllib.toml)
            round_cache["at"] = time.monotonic()
        return round_cache["value"]

    def capacity() -> int:
        return dispatcher.capacity() if dispatcher is not None else 1

    def place(reg: "Registry", accepted: Accepted) -> tuple[int | None, float | None]:
        """A submission's place in the queue and estimated start, read in its batch."""
        from mllib.queue.views import position

        fair = fair_round(reg)
        return position(
            reg, accepted.job, capacity=round_cache["slots"], mean_s=mean_s(reg), fair=fair,
            ahead=accepted.ahead,
        )  # fmt: skip

    commits = GroupCommit(ctx, place)
    app.state.commits = commits  # stopped by whoever serves the app (mllib.server.main)

    @app.get("/health", tags=["server"])
    def health() -> dict[str, str]:
        """Whether the server answers and reaches its database."""
        with ctx.registry() as reg:
            reg.query("SELECT 1 AS ok")
        return {"status": "ok"}

    @app.get("/metrics", tags=["server"], response_class=Response)
    def metrics() -> Response:
        """The runs, queue and agents in Prometheus' text format: aggregates only (no user, no
        run id), so Prometheus scrapes it without a token (mllib.server.metrics)."""
        from mllib.server.metrics import CONTENT_TYPE, exposition

        return Response(exposition(ctx, dispatcher), media_type=CONTENT_TYPE)

    @app.get(f"{PREFIX}/whoami", response_model=api.Whoami, tags=["accounts"])
    def whoami(request: Request, who: Who) -> api.Whoami:
        """The user the token belongs to."""
        return api.Whoami(name=who.name, admin=who.admin, server=str(request.base_url))

    @app.post(f"{PREFIX}/logout", status_code=204, tags=["accounts"])
    def logout(
        credentials: Credentials,
        who: Who,
    ) -> Response:
        """Revoke the token this request carries."""
        assert credentials is not None
        with ctx.registry() as reg:
            revoke_token(reg, credentials.credentials)
        tokens.drop(credentials.credentials)
        return Response(status_code=204)

    @app.post(f"{PREFIX}/blobs/missing", response_model=api.Missing, tags=["blobs"])
    def missing(body: api.Shas, who: Who) -> api.Missing:
        """Which of these blobs (code files and trees, models) the server lacks."""
        check_shas(body.shas)
        return api.Missing(missing=[s for s in dict.fromkeys(body.shas) if not ctx.store.has(s)])

    @app.put(f"{PREFIX}/blobs/{{sha256}}", status_code=204, tags=["blobs"])
    async def put_blob(sha256: str, request: Request, who: Who) -> Response:
        """Store one blob; its body must hash to `sha256` (413 past `max_upload_mb`)."""
        data = await read_blob(request.stream(), sha256, ctx.settings.max_upload_mb)
        if not ctx.store.has(sha256):
            await run_in_threadpool(ctx.store.put_bytes, data, sha256=sha256)
        return Response(status_code=204)

    @app.post(
        f"{PREFIX}/runs",
        response_model=api.SubmittedRun,
        status_code=201,
        tags=["runs"],
        responses={200: {"model": api.SubmittedRun, "description": "A retried submission"}},
    )
    async def submit_run(body: api.SubmissionBody, who: Who) -> Response:
        """Queue a run; answered (201) once it is durable. A retry with the same idempotency
        key answers (200) with the run the first submission made (`created`: false)."""
        sub = submission_of(body)
        limit = who.max_queued if who.max_queued is not None else ctx.settings.max_queued
        accepted = await commits.submit_async(who, sub, limit)  # durable once this returns
        answer = submitted(accepted)  # the answer's model, already checked: encoded once
        return Response(
            answer.model_dump_json(),
            201 if accepted.created else 200,
            media_type="application/json",
        )

    @app.get(f"{PREFIX}/runs", tags=["runs"])
    def list_runs_(
        who: Who,
        status: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 20,
        all_users: Annotated[bool, Query(alias="all")] = False,
    ) -> list[dict[str, Any]]:
        """Runs, newest first: yours, or (`all`, admins) everyone's; `runs list --json` keys."""
        from mllib.registry.runs import list_runs
        from mllib.runs.views import STATUSES, run_dict

        if status is not None and status not in STATUSES:
            raise UsageError(f"Unknown status {status!r}", hint=f"One of: {', '.join(STATUSES)}.")
        mine = None if all_users and who.admin else who.name
        with ctx.registry() as reg:
            ws = ctx.workspace(reg)
            runs = list_runs(reg, status=status, user=mine, limit=limit)
            return [json_safe(run_dict(ws, r, detail=False)) for r in runs]

    # Live views (the dashboard's Runs pane): declared before /runs/{run_id}, which would take
    # their names for run ids.
    Metric = Annotated[
        str | None, Query(max_length=256, description="Rows carry its newest values")
    ]
    Points = Annotated[int, Query(ge=0, le=200, description="How many of them (a sparkline's)")]
    Everyone = Annotated[bool, Query(alias="all", description="Everyone's (admins)")]

    @app.get(f"{PREFIX}/runs/window", tags=["runs"])
    def runs_window(
        who: Who,
        status: Annotated[str | None, Query(max_length=32)] = None,
        model: Annotated[str | None, Query(max_length=256)] = None,
        user: Annotated[str | None, Query(max_length=128)] = None,
        text: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
        metric: Metric = None,
        points: Points = 24,
        all_users: Everyone = False,
    ) -> dict[str, Any]:
        """The newest `limit` matching runs as compact rows (`total`: how many match in all) and
        the `cursor` that GET /runs/changes goes on from."""
        from mllib.runs.live import window
        from mllib.runs.views import STATUSES

        if status is not None and status not in STATUSES:
            raise UsageError(f"Unknown status {status!r}", hint=f"One of: {', '.join(STATUSES)}.")
        mine = None if all_users and who.admin else who.name
        with ctx.registry() as reg:
            found = window(
                reg, status=status, model=model, user=mine or user, text=text, limit=limit,
                metric=metric, points=points,
            )  # fmt: skip
        if mine is not None and user not in (None, mine):  # nobody else's runs are yours
            found |= {"total": 0, "runs": []}
        return dict(json_safe(found))

    @app.get(f"{PREFIX}/runs/changes", tags=["runs"])
    def runs_changes(
        who: Who,
        change: Annotated[int, Query(ge=0, le=2**62)] = 0,
        metric_row: Annotated[int, Query(ge=0, le=2**62)] = 0,
        horizon: Annotated[int, Query(ge=0, le=2**62)] = 0,
        metric: Metric = None,
        points: Points = 24,
        all_users: Everyone = False,
    ) -> dict[str, Any]:
        """The runs whose record (`records`) or metric points (`metrics`) changed after the
        cursor (`change`, `metric_row`, `horizon`), as rows, and the cursor to go on from."""
        from mllib.registry.changes import Cursor
        from mllib.runs.live import changes

        mine = None if all_users and who.admin else who.name
        with ctx.registry() as reg:
            found = changes(
                reg, Cursor(change, metric_row, horizon), user=mine, metric=metric, points=points
            )
        return dict(json_safe(found))

    @app.post(f"{PREFIX}/runs/metric-names", tags=["runs"])
    def runs_metric_names(body: api.RunIdsBody, who: Who) -> list[str]:
        """The metric names these runs logged, in first-seen order."""
        from mllib.runs.live import metric_choices

        with ctx.registry() as reg:
            return metric_choices(reg, [own_run(reg, who, r).id for r in body.run_ids])

    @app.get(f"{PREFIX}/runs/{{run_id}}", tags=["runs"])
    def show_run(run_id: str, who: Who) -> dict[str, Any]:
        """One run with `runs show --json`'s keys, plus `queue` (its place while queued)."""
        from mllib.queue.jobs import get_job
        from mllib.queue.views import position
        from mllib.runs.views import run_dict
        from mllib.server.schedules import deployment_of_run

        with ctx.registry() as reg:
            run = own_run(reg, who, run_id)
            data = run_dict(ctx.workspace(reg), run)
            job = get_job(reg, run.id)
            place, wait = (None, None)
            if job is not None:
                place, wait = position(reg, job, capacity=capacity(), mean_s=mean_s(reg))
            data["queue"] = {"position": place, "estimated_start_s": wait}
            data["deployment"] = deployment_of_run(reg, run.id)  # a scheduled evaluation's
            return dict(json_safe(data))

    @app.get(f"{PREFIX}/runs/{{run_id}}/log", tags=["runs"])
    def run_log(
        run_id: str,
        who: Who,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
        tail: Annotated[
            int | None, Query(ge=0, le=4 << 20, description="Start this many bytes before the end")
        ] = None,
    ) -> Response:
        """The run's output from byte `offset`, or its last `tail` bytes (X-Log-Offset: where the
        answer ends; X-Run-Status: its status as read before)."""
        from mllib.protocol.folder import RunFolder

        with ctx.registry() as reg:
            run = own_run(reg, who, run_id)
        path = RunFolder(ctx.home.runs_dir / run.id).log_file
        data = b""
        if path.exists():
            with open(path, "rb") as handle:
                if tail is not None:
                    offset = max(0, handle.seek(0, 2) - tail)
                handle.seek(offset)
                data = handle.read(4 << 20)
        headers = {"X-Run-Status": run.status, "X-Log-Offset": str(offset + len(data))}
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.get(f"{PREFIX}/runs/{{run_id}}/metrics", tags=["runs"])
    def run_metrics(
        run_id: str,
        who: Who,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        name: Annotated[
            str | None, Query(min_length=1, max_length=200, description="This metric's alone")
        ] = None,
    ) -> dict[str, Any]:
        """The run's metric points logged after `after` (a seq), in logging order: `points` as
        [seq, name, step, value] (non-finite values by name), at most 50,000 an answer; `name`:
        one metric's (a chart of one metric reads no other's points)."""
        from mllib.registry.metrics import points_after

        with ctx.registry() as reg:
            run = own_run(reg, who, run_id)
            return {"points": json_safe(points_after(reg, run.id, after, name=name))}

    @app.post(f"{PREFIX}/runs/{{run_id}}/cancel", tags=["runs"])
    def cancel_run(run_id: str, who: Who) -> dict[str, Any]:
        """Stop a queued or running run (on its agent too); its record after."""
        from mllib.runs.views import run_dict

        with ctx.registry() as reg:
            run = own_run(reg, who, run_id)
            if not run.finished:
                if dispatcher is not None:
                    dispatcher.cancel(reg, run.id)
                else:
                    from mllib.server.dispatch import cancel_queued

                    cancel_queued(reg, ctx.home.runs_dir, run.id)
            return dict(json_safe(run_dict(ctx.workspace(reg), own_run(reg, who, run_id))))

    @app.post(f"{PREFIX}/runs/{{run_id}}/rerun", response_model=api.SubmittedRun, tags=["runs"])
    def rerun_run(
        run_id: str, body: api.RerunBody, response: Response, who: Who
    ) -> api.SubmittedRun:
        """Queue one of your runs again with its recorded code, params, seed and spec."""
        from mllib.server.submit import rerun_of

        with ctx.registry() as reg:
            sub = rerun_of(reg, own_run(reg, who, run_id), body.model_dump())
        limit = who.max_queued if who.max_queued is not None else ctx.settings.max_queued
        accepted = commits.submit(who, sub, limit)
        response.status_code = 201 if accepted.created else 200
        return submitted(accepted)

    @app.post(f"{PREFIX}/runs/compare", tags=["runs"])
    def compare_runs(body: api.CompareBody, who: Who) -> dict[str, Any]:
        """`runs compare --json` of runs you can see."""
        from mllib.runs.views import compare

        with ctx.registry() as reg:
            ids = [own_run(reg, who, rid).id for rid in body.run_ids]
            return dict(json_safe(compare(ctx.workspace(reg), ids)))

    @app.get(f"{PREFIX}/queue", tags=["queue"])
    def show_queue(
        who: Who,
        all_users: Annotated[bool, Query(alias="all")] = False,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> dict[str, Any]:
        """Running and queued runs (yours; `all`, admins: everyone's) with places and estimates."""
        from mllib.queue.views import queue

        if all_users and not who.admin:
            raise AuthError("Only admins may see everyone's queue", hint="Drop --all.")
        with ctx.registry() as reg:
            return queue(
                reg,
                user=None if all_users else who.name,
                capacity=capacity(),
                limit=limit,
                mean_s=mean_s(reg),
            )

    @app.post(f"{PREFIX}/schedules", status_code=201, tags=["schedules"])
    def add_schedule(body: api.ScheduleBody, who: Who) -> dict[str, Any]:
        """Repeat one of your evaluation runs every period, on the newest version of each
        dataset it read (but those `data` pins); the server queues each run itself."""
        from mllib.server import schedules

        if (body.run_id is None) == (body.model is None):
            raise UsageError(
                "Give one of run_id (an evaluation to repeat) and model (a name to evaluate)"
            )
        with ctx.registry() as reg:
            if body.model is not None:
                return schedules.create_for_model(
                    reg, who, commits, ctx, body.model, body.every,
                    gates=body.gates, data=body.data, env=body.env,
                )  # fmt: skip
            return schedules.create(
                reg, who, body.run_id or "", body.every,
                gates=body.gates, data=body.data, env=body.env, home=ctx.home,
            )  # fmt: skip

    @app.get(f"{PREFIX}/schedules", tags=["schedules"])
    def list_schedules(
        who: Who, all_users: Annotated[bool, Query(alias="all")] = False
    ) -> list[dict[str, Any]]:
        """Your schedules (`all`, admins: everyone's), each with its last run."""
        from mllib.server import schedules

        with ctx.registry() as reg:
            return schedules.list_schedules(reg, who, everyone=all_users)

    @app.get(f"{PREFIX}/schedules/{{schedule_id}}", tags=["schedules"])
    def show_schedule(schedule_id: Annotated[str, Path(max_length=64)], who: Who) -> dict[str, Any]:
        """One of your schedules with its latest runs: status, eval metrics, gates broken."""
        from mllib.server import schedules

        with ctx.registry() as reg:
            return dict(json_safe(schedules.show(reg, who, schedule_id)))

    @app.delete(f"{PREFIX}/schedules/{{schedule_id}}", tags=["schedules"])
    def remove_schedule(
        schedule_id: Annotated[str, Path(max_length=64)], who: Who
    ) -> dict[str, Any]:
        """Stop one of your schedules (its runs stay)."""
        from mllib.server import schedules

        with ctx.registry() as reg:
            return schedules.remove(reg, who, schedule_id)

    @app.post(
        f"{PREFIX}/schedules/{{schedule_id}}/run",
        response_model=api.SubmittedRun,
        status_code=201,
        tags=["schedules"],
    )
    def run_schedule_now(
        schedule_id: Annotated[str, Path(max_length=64)], who: Who
    ) -> api.SubmittedRun:
        """Queue one of your schedules' runs now (its next time stays as it was)."""
        from mllib.server import schedules

        with ctx.registry() as reg:
            accepted = schedules.run_now(reg, who, commits, ctx, schedule_id)
        return submitted(accepted)

    @app.get(f"{PREFIX}/agents", response_model=list[api.Agent], tags=["agents"])
    def list_agents(
        who: Who,
        check: Annotated[
            bool, Query(description="Ask each agent now (else: when last asked)")
        ] = False,
    ) -> list[dict[str, Any]]:
        """The server's agents: GPUs, slots, the running runs holding them (yours by id, others'
        by user), and whether each answered the server when it last asked."""
        from mllib.agents.config import load_agents
        from mllib.server.fleet import agents

        if check and dispatcher is not None:
            dispatcher.check()
        contacts = dispatcher.contacts if dispatcher is not None else {}
        detected = dispatcher.gpus if dispatcher is not None else {}
        with ctx.registry() as reg:
            specs = load_agents(ctx.workspace(reg).project.config)
            return agents(reg, specs, who, contacts=contacts, detected=detected)

    return app


def error_answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers that answer a request failed by `exc`: a known error
    (MllibError) or the database gone (503); anything else is a 500."""
    from mllib.registry.postgres import DatabaseUnavailable

    if not isinstance(exc, MllibError):
        if _is_connection_error(exc):
            down: dict[str, str | None] = {"error": "The server's database is unreachable"}
            return 503, {**down, "hint": "Try again shortly."}, {"Retry-After": "2"}
        return 500, {"error": "Internal server error", "hint": None}, {}
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
    if isinstance(exc, DatabaseUnavailable):
        status = 503
    headers = {}
    if isinstance(exc, QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after_s)
    if status == 503:
        headers["Retry-After"] = "2"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body: dict[str, Any] = {"error": exc.message, "hint": exc.hint}
    if isinstance(exc, ChunksMissingError):
        body["missing"] = exc.missing
    return status, body, headers


def submission_of(body: api.SubmissionBody) -> Submission:
    """The submission a validated body describes (its nested models as plain dicts; the rest
    taken as they are, not dumped and copied)."""
    fields = dict(body)
    fields["spec"] = body.spec.model_dump()
    fields["datasets"] = [binding.model_dump() for binding in body.datasets]
    return Submission(**fields)


def submitted(accepted: "Accepted") -> api.SubmittedRun:
    """The answer to a run queued (`api.SubmittedRun`): its id, status, place and wait."""
    place, wait = accepted.position
    return api.SubmittedRun(
        id=accepted.run.id,
        status=accepted.run.status,
        created=accepted.created,
        position=place,
        estimated_start_s=wait,
    )


def _is_connection_error(exc: BaseException) -> bool:
    """A database that went away mid-request (a restart): 503, not a crash."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite only
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
