"""The model side of a server: a LitAPI that loads a trained run's model the way the run's worker
does (in a LitServe worker process, or inline in an API server), and a LitServe loop that answers
each request with a status and JSON bytes (worker mode).

Requests arrive as (request id, body bytes); the reply is (HTTP status, body bytes), encoded with
mllib.encoding, the one encoder `mllib predict` uses too. A predict() that raises, or returns
something JSON cannot hold, is answered with a 500 naming the problem and the request id (which
is also the error id in the server log); the worker goes on serving.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

# Only server processes import this module, never the CLI's startup path.
import litserve as ls  # noqa: TID253
import orjson
from litserve.loops.base import LitLoop  # noqa: TID253
from litserve.utils import LitAPIStatus, LoopResponseType  # noqa: TID253

from mllib.encoding import from_json, to_json_bytes
from mllib.errors import MllibError, SerializationError
from mllib.serving import logs
from mllib.serving.state import LOADING, READY, WorkerBoard

log = logging.getLogger("mllib.serving")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker loads and how it reports."""

    bundle_dir: str  # holds code/ and model/
    model_file: str  # relative to code/
    model_class: str
    labels: dict[str, str] = field(default_factory=dict)  # env, model, version
    log_format: str = logs.JSON
    show_errors: bool = True  # put predict()'s exception message in 500 replies (not on prod)
    timeout_s: float | None = None  # a request queued longer has had its 504: not predicted


def load_predictor(spec: WorkerSpec) -> Callable[[Any], Any]:
    """Import the model file from the code snapshot, load the saved model, return its predict."""
    from mllib.persistence import load_model
    from mllib.worker.main import call_user, import_model_module

    bundle = Path(spec.bundle_dir)
    module = import_model_module(bundle / "code" / spec.model_file)
    cls = getattr(module, spec.model_class, None)
    if cls is None:
        raise MllibError(f"{spec.model_file} defines no class {spec.model_class!r}")
    model = call_user(load_model, cls, bundle / "model")
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise MllibError(f"{spec.model_class} has no predict(self, request) method")
    return predict


def describe_load_error(exc: BaseException) -> tuple[str, str | None]:
    """(one-line message, the user's traceback or None) for a model that failed to load."""
    from mllib.worker.main import UserCodeError
    from mllib.worker.tracebacks import user_traceback

    if isinstance(exc, UserCodeError) and exc.__cause__ is not None:
        cause = exc.__cause__
        return f"loading the model raised {type(cause).__name__}: {cause}", user_traceback(cause)
    return f"loading the model failed: {exc}", None


def error_body(message: str, request_id: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": message, "error_id": request_id, **extra})


class ModelAPI(ls.LitAPI):
    """Serves one trained model version."""

    def __init__(self, spec: WorkerSpec, board: WorkerBoard) -> None:
        super().__init__(api_path="/predict", loop=ModelLoop())
        self.worker_spec = spec
        self.board = board
        self._model_predict: Callable[[Any], Any] | None = None
        self._predict_timer: Any = None

    def setup(self, device: Any) -> None:
        """In a LitServe inference worker process (worker mode)."""
        worker = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops workers, not Ctrl-C
        logs.configure(self.worker_spec.log_format, {**self.worker_spec.labels, "worker": worker})
        self.load(worker)

    @property
    def loaded(self) -> bool:
        return self._model_predict is not None

    def load(self, worker: int) -> None:
        """Load the model in this process, reporting progress on the board as worker `worker`."""
        self.board.set_worker(worker, os.getpid(), LOADING)
        started = time.perf_counter()
        try:
            predict = load_predictor(self.worker_spec)
        except BaseException as exc:
            # Reported here, once, with the user's traceback; the server's main process sees the
            # failure on the board and stops. (Raising would make LitServe log it all again.)
            message, trace = describe_load_error(exc)
            log.error(message, extra={"event": "load_failed", "traceback": trace or ""})
            self.board.fail(worker, message)
            return
        from mllib.serving.metrics import PredictMetrics

        self._predict_timer = PredictMetrics(self.worker_spec.labels).seconds
        self._model_predict = predict
        # Everything loaded so far lives as long as the process: keep the collector off it.
        gc.collect()
        gc.freeze()
        self.board.set_worker(worker, os.getpid(), READY)
        log.info(
            f"model loaded in {time.perf_counter() - started:.2f}s",
            extra={"event": "worker_ready", "worker": worker},
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
        try:
            request = self.decode_request(body)
        except ValueError as exc:
            return 400, error_body(
                f"The request body is not valid JSON: {exc}",
                request_id,
                hint='Send one JSON document, for example {"x": 1}.',
            )
        started = time.perf_counter()
        try:
            result = self.predict(request)
        except BaseException as exc:  # the model's code; this worker must go on serving
            return 500, self._failed(exc, request_id)
        finally:
            self._predict_timer.observe(time.perf_counter() - started)
        try:
            return 200, self.encode_response(result)
        except SerializationError as exc:
            log.error(
                f"request {request_id}: {exc.message}",
                extra={"event": "encode_error", "error_id": request_id},
            )
            return 500, error_body(exc.message, request_id, hint=exc.hint)

    def _failed(self, exc: BaseException, request_id: str) -> bytes:
        from mllib.worker.tracebacks import user_traceback

        kind = type(exc).__name__
        log.error(
            f"request {request_id}: predict() raised {kind}: {exc}",
            extra={
                "event": "predict_error",
                "error_id": request_id,
                "traceback": user_traceback(exc),
            },
        )
        message = f"predict() raised {kind}"
        if self.worker_spec.show_errors:
            message += f": {exc}"
        return error_body(
            message, request_id, hint="The server log has the traceback under this error id."
        )


class ModelLoop(LitLoop):
    """Take (request id, body) from the queue, reply (status, body) on the API server's pipe."""

    def run(
        self,
        lit_api: ModelAPI,
        device: Any,
        worker_id: int,
        request_queue: Any,
        transport: Any,
        workers_setup_status: Any,
        callback_runner: Any,
    ) -> None:
        while True:
            try:
                item = request_queue.get(timeout=1.0)
            except Empty:
                continue
            if item is None:
                return
            response_queue_id, uid, queued_at, (request_id, body) = item
            timeout = lit_api.worker_spec.timeout_s
            if timeout is not None and time.monotonic() - queued_at > timeout:
                continue  # its API server answered 504 and stopped waiting (one system clock)
            reply = lit_api.answer(request_id, body)
            transport.send(
                (uid, (reply, LitAPIStatus.OK, LoopResponseType.REGULAR, worker_id)),
                consumer_id=response_queue_id,
            )
