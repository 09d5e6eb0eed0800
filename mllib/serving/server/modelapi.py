"""The model side of a server: a LitAPI that loads a trained run's model the way the run's worker
does (in a LitServe worker process, or inline in an API server), and answers each request with a
status and JSON bytes.

Requests arrive as (request id, body bytes); the reply is (HTTP status, body bytes), encoded with
mllib.encoding, the one encoder `mllib predict` uses too. A predict() that raises, or returns
something JSON cannot hold, is answered with a 500 naming the problem and the request id (which
is also the error id in the server log); the worker goes on serving. A predict() that raises
mllib.BadRequest refuses the request: its status (400, 422, ...) with the model's message.

A model class may also define `predict_batch(self, requests: list) -> list`: inline, the predict
thread then answers the requests queued together with one call of it (`answer_batch`).

A LitServe API (a servable of kind LITAPI) is loaded by mllib.serving.server.litapi: its
decode_request and encode_response wrap predict, and its max_batch_size and batch_timeout
replace [serve] max_batch.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Only server processes import this module, never the CLI's startup path.
import litserve as ls  # noqa: TID253
import orjson

from mllib import error_reports
from mllib.encoding import from_json, to_json_bytes
from mllib.errors import BadRequest, MllibError, SerializationError
from mllib.serving import pids
from mllib.serving.server import logwriter
from mllib.serving.server.board import LOADING, READY, WorkerBoard
from mllib.serving.server.litserve_internals import API_PATH, ModelLoop, current_worker_id
from mllib.serving.spec import CODE_DIR, LITAPI, MODEL_DIR, ServerSpec

log = logging.getLogger("mllib.serving")


def load_predictor(bundle: Path, model_file: str, model_class: str) -> Callable[[Any], Any]:
    """Import the model file from the bundle's code snapshot, load the saved model, return its
    predict."""
    return load_methods(bundle, model_file, model_class)[0]


def load_methods(
    bundle: Path, model_file: str, model_class: str
) -> tuple[Callable[[Any], Any], Callable[[list], Any] | None]:
    """The loaded model's predict, and its predict_batch where its class defines one."""
    from mllib.persistence import load_model
    from mllib.worker.main import call_user, import_model_module

    module = import_model_module(bundle / CODE_DIR / model_file)
    cls = getattr(module, model_class, None)
    if cls is None:
        raise MllibError(f"{model_file} defines no class {model_class!r}")
    model = call_user(load_model, cls, bundle / MODEL_DIR)
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise MllibError(f"{model_class} has no predict(self, request) method")
    predict_batch = getattr(model, "predict_batch", None)
    return predict, predict_batch if callable(predict_batch) else None


def describe_load_error(exc: BaseException) -> tuple[str, str | None]:
    """(one-line message, the user's traceback or None) for a model that failed to load."""
    from mllib.worker.main import UserCodeError
    from mllib.worker.tracebacks import user_traceback

    if isinstance(exc, UserCodeError) and exc.__cause__ is not None:
        cause = exc.__cause__
        return f"loading the model raised {type(cause).__name__}: {cause}", user_traceback(cause)
    return f"loading the model failed: {exc}", None


def _cause(exc: BaseException) -> BaseException:
    """The model's own exception behind a UserCodeError (mllib.worker.main.call_user)."""
    from mllib.worker.main import UserCodeError

    return exc.__cause__ if isinstance(exc, UserCodeError) and exc.__cause__ else exc


def _failure_class(exc: BaseException) -> str:
    from mllib.worker.main import UserCodeError

    user = isinstance(exc, UserCodeError | MllibError)
    return error_reports.USER_ERROR if user else error_reports.SYSTEM_ERROR


def error_body(message: str, request_id: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": message, "error_id": request_id, **extra})


class ModelAPI(ls.LitAPI):
    """Serves one trained model version: the servable of `server_spec`, loaded from its bundle.
    (Not `spec`: LitAPI's own `spec` is an API specification such as OpenAI's.)"""

    def __init__(self, server_spec: ServerSpec, board: WorkerBoard) -> None:
        super().__init__(api_path=API_PATH, loop=ModelLoop())
        self.server_spec = server_spec
        self.board = board
        self._model_predict: Callable[[Any], Any] | None = None
        self._model_predict_batch: Callable[[list], Any] | None = None
        self._user_decode: Callable[[Any], Any] | None = None  # a LitServe API's steps
        self._user_encode: Callable[[Any], Any] | None = None
        self._metrics: Any = None
        self.max_batch = server_spec.max_batch  # requests answered together, at most
        self.batch_timeout_s = 0.0  # how long a batch may wait to fill

    def setup(self, device: Any) -> None:
        """In a LitServe inference worker process (worker mode)."""
        worker = current_worker_id()
        pids.record_self("worker")  # LitServe starts (and restarts) these where mllib cannot see
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops workers, not Ctrl-C
        spec = self.server_spec
        logwriter.configure(spec.log_format, {**spec.labels, "worker": worker})
        self.load(worker)

    @property
    def queue_timeout_s(self) -> float:
        """A request queued longer has had its 504 from its API server: it is not predicted."""
        return self.server_spec.timeout_s

    @property
    def loaded(self) -> bool:
        return self._model_predict is not None

    @property
    def batches(self) -> bool:
        """The model defines predict_batch: queued requests can be answered together."""
        return self._model_predict_batch is not None

    def load(self, worker: int) -> None:
        """Load the model in this process, reporting progress on the board as worker `worker`."""
        self.board.set_worker(worker, os.getpid(), LOADING)
        started = time.perf_counter()
        spec = self.server_spec
        error_reports.set_tags(
            **spec.labels, deployment=spec.deployment, run_id=spec.servable.run_id
        )
        try:
            predict, predict_batch, loaded = self._load_methods(worker)
        except BaseException as exc:
            # Reported here, once, with the user's traceback; the server's main process sees the
            # failure on the board and stops. (Raising would make LitServe log it all again.)
            message, trace = describe_load_error(exc)
            log.error(message, extra={"event": "load_failed", "traceback": trace or ""})
            error_reports.report(_cause(exc), failure_class=_failure_class(exc), event="load")
            error_reports.flush()
            self.board.fail(worker, message)
            return
        from mllib.serving.server.metrics import PredictMetrics

        self._metrics = PredictMetrics(self.server_spec.labels)
        if not (self.server_spec.inline or loaded):  # worker mode batches a LitServe API only
            predict_batch = None
        self._model_predict_batch = predict_batch
        self._model_predict = predict
        # Everything loaded so far lives as long as the process: keep the collector off it.
        gc.collect()
        gc.freeze()
        self.board.set_worker(worker, os.getpid(), READY)
        what, where = loaded or ("model loaded", "")
        extra = {"event": "worker_ready", "worker": worker}
        if loaded:
            extra["device"] = self.device
        log.info(f"{what} in {time.perf_counter() - started:.2f}s{where}", extra=extra)

    def _load_methods(
        self, worker: int
    ) -> tuple[Callable[[Any], Any], Callable[[list], Any] | None, tuple[str, str] | None]:
        """predict and predict_batch of the servable, and (a LitServe API) what was set up and
        where, for the log."""
        servable = self.server_spec.servable
        bundle = Path(self.server_spec.bundle_dir)
        if servable.kind != LITAPI:
            return (*load_methods(bundle, servable.model_file, servable.model_class), None)
        from mllib.serving.server.litapi import load_api

        api = load_api(bundle, servable.model_file, servable.model_class, worker)
        self._user_decode, self._user_encode = api.decode, api.encode
        self.max_batch, self.batch_timeout_s = api.max_batch, api.batch_timeout_s
        self.device = api.device
        batching = f" (batches of up to {api.max_batch})" if api.predict_batch else ""
        return (
            api.predict,
            api.predict_batch,
            (f"{api.description} set up", f" on {api.device}{batching}"),
        )

    def decode_request(self, request: Any) -> Any:
        return from_json(request)

    def predict(self, x: Any) -> Any:
        return self._model_predict(x)

    def encode_response(self, output: Any) -> bytes:
        return to_json_bytes(output)

    def answer(self, request_id: str, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and body for one request; never raises."""
        if self._model_predict is None:
            return 503, error_body("The model could not be loaded.", request_id)
        request, refused = self._decode(request_id, body)
        if refused is not None:
            return refused
        return self._predict_one(request_id, request)

    def answer_batch(self, jobs: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
        """The replies to several (request id, body), in order, with one predict_batch() call;
        never raises. A body that is not JSON gets its 400 alone; if predict_batch raises or
        returns a wrong count, each request is predicted on its own, so each gets its own 200
        or 500."""
        if self._model_predict_batch is None:
            return [self.answer(request_id, body) for request_id, body in jobs]
        replies: list[tuple[int, bytes] | None] = [None] * len(jobs)
        decoded: list[tuple[int, Any]] = []  # (place in jobs, request)
        for place, (request_id, body) in enumerate(jobs):
            request, replies[place] = self._decode(request_id, body)
            if replies[place] is None:
                decoded.append((place, request))
        if not decoded:
            return replies  # type: ignore[return-value]
        requests = [request for _, request in decoded]
        started = time.perf_counter()
        try:
            results = _as_results(self._model_predict_batch(requests), len(requests))
        except BaseException as exc:  # the model's code: answer each request on its own
            request_ids = [jobs[place][0] for place, _ in decoded]
            self._batch_failed(exc, request_ids)
            for place, request in decoded:
                replies[place] = self._predict_one(jobs[place][0], request)
            if all(replies[place][0] == 200 for place, _ in decoded):  # type: ignore[index]
                # predict() answered each: the fault is predict_batch's own (a request whose
                # predict() raised too was reported with its request id, once)
                error_reports.report(
                    exc,
                    failure_class=error_reports.USER_ERROR,
                    event="predict_batch",
                    request_id=",".join(request_ids)[:200],
                )
            return replies  # type: ignore[return-value]
        seconds = time.perf_counter() - started
        self._metrics.batch(len(requests))
        for (place, _), result in zip(decoded, results, strict=True):
            self._metrics.seconds.observe(seconds)
            replies[place] = self._encode(jobs[place][0], result)
        return replies  # type: ignore[return-value]

    def _decode(self, request_id: str, body: bytes) -> tuple[Any, tuple[int, bytes] | None]:
        """(the request, None), or (None, the reply): 400 for a body that is not JSON; a
        LitServe API's decode_request may refuse it (4xx) or fail (500)."""
        try:
            request = self.decode_request(body)
        except ValueError as exc:
            return None, (
                400,
                error_body(
                    f"The request body is not valid JSON: {exc}",
                    request_id,
                    hint='Send one JSON document, for example {"x": 1}.',
                ),
            )
        if self._user_decode is None:
            return request, None
        try:
            return self._user_decode(request), None
        except BadRequest as exc:
            return None, (exc.status, self._refused(exc, request_id, "decode_request"))
        except BaseException as exc:  # the API's code; this worker must go on serving
            return None, (500, self._failed(exc, request_id, "decode_request"))

    def _predict_one(self, request_id: str, request: Any) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            result = self.predict(request)
        except BadRequest as exc:  # the model refused the request: the caller's mistake
            return exc.status, self._refused(exc, request_id)
        except BaseException as exc:  # the model's code; this worker must go on serving
            return 500, self._failed(exc, request_id)
        finally:
            self._metrics.seconds.observe(time.perf_counter() - started)
        return self._encode(request_id, result)

    def _encode(self, request_id: str, result: Any) -> tuple[int, bytes]:
        if self._user_encode is not None:
            try:
                result = self._user_encode(result)
            except BadRequest as exc:
                return exc.status, self._refused(exc, request_id, "encode_response")
            except BaseException as exc:  # the API's code
                return 500, self._failed(exc, request_id, "encode_response")
        try:
            return 200, self.encode_response(result)
        except SerializationError as exc:
            log.error(
                f"request {request_id}: {exc.message}",
                extra={"event": "encode_error", "error_id": request_id},
            )
            return 500, error_body(exc.message, request_id, hint=exc.hint)

    def _batch_failed(self, exc: BaseException, request_ids: list[str]) -> None:
        from mllib.worker.tracebacks import user_traceback

        log.error(
            f"predict_batch() failed for {len(request_ids)} requests ({type(exc).__name__}: "
            f"{exc}); answering each with predict()",
            extra={
                "event": "predict_batch_error",
                "request_ids": request_ids,
                "traceback": user_traceback(exc),
            },
        )

    def _refused(self, exc: BadRequest, request_id: str, step: str = "predict") -> bytes:
        """The model's own words to its caller (logged as a client error, not reported)."""
        log.info(
            f"request {request_id}: {step}() refused it ({exc.status}): {exc.message}",
            extra={"event": "bad_request", "error_id": request_id, "status": exc.status},
        )
        return error_body(exc.message, request_id)

    def _failed(self, exc: BaseException, request_id: str, step: str = "predict") -> bytes:
        from mllib.worker.tracebacks import user_traceback

        kind = type(exc).__name__
        log.error(
            f"request {request_id}: {step}() raised {kind}: {exc}",
            extra={
                "event": "predict_error",
                "error_id": request_id,
                "traceback": user_traceback(exc),
            },
        )
        error_reports.report(
            exc, failure_class=error_reports.USER_ERROR, event=step, request_id=request_id
        )
        message = f"{step}() raised {kind}"
        if self.server_spec.show_errors:
            message += f": {exc}"
        return error_body(
            message, request_id, hint="The server log has the traceback under this error id."
        )


def _as_results(results: Any, count: int) -> list:
    """predict_batch()'s results as a list of `count`, or a ValueError saying what is wrong."""
    if isinstance(results, dict | str | bytes) or not hasattr(results, "__iter__"):
        raise ValueError(f"predict_batch() must return a list, not {type(results).__name__}")
    results = list(results)
    if len(results) != count:
        raise ValueError(f"predict_batch() returned {len(results)} results for {count} requests")
    return results
