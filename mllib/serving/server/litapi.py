"""A user's LitServe API (a litserve.LitAPI subclass) served as it is, in a process that predicts.

The API is created as its own file creates it (`MyAPI(max_batch_size=8, batch_timeout=0.05)`,
see mllib.discovery.constructor_args), `setup(device)` is called once in the process, on the
GPU when there is one; then each request goes through `decode_request` -> `predict` ->
`encode_response` (a `request` annotated with a pydantic model gets the body as that model, and
a 422 when it does not fit, as LitServe's endpoint does), and, with `max_batch_size` > 1, requests taken together go through
`decode_request` each -> `batch` -> `predict` -> `unbatch` -> `encode_response` each, as
LitServe's own loops call them (a lone request is a batch of one: such a predict() always gets
a batch). Steps that take a `context` argument get the request's context dict, as in LitServe.
An `HTTPException` with a 4xx status raised by the API refuses the request like
mllib.BadRequest.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Only server processes import this module, never the CLI's startup path.
import litserve as ls  # noqa: TID253
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from mllib.discovery import constructor_args
from mllib.errors import BadRequest, MllibError
from mllib.serving.spec import CODE_DIR

NVIDIA_SMI_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LoadedAPI:
    """What ModelAPI answers requests with: the API's steps, each refusing a request with
    BadRequest, and how it batches."""

    decode: Callable[[Any], Any]  # the body as JSON -> the decoded request
    predict: Callable[[Any], Any]  # one decoded request -> its output
    predict_batch: Callable[[list[Any]], list[Any]] | None  # decoded requests -> outputs
    encode: Callable[[Any], Any]  # an output -> the answer as JSON values
    max_batch: int
    batch_timeout_s: float
    device: str
    description: str  # how it was created, for the log


def load_api(bundle: Path, model_file: str, class_name: str, worker: int) -> LoadedAPI:
    """Import the API's file from the bundle's code, create the API as the file does, and call
    its setup() on this worker's device."""
    from mllib.worker.main import call_user, import_model_module

    path = bundle / CODE_DIR / model_file
    module = import_model_module(path)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise MllibError(f"{model_file} defines no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, ls.LitAPI)):
        raise MllibError(f"{class_name} is not a litserve.LitAPI subclass")
    kwargs = constructor_args(path, class_name)
    api = call_user(functools.partial(cls, **kwargs))
    _check_supported(api, class_name)
    api.pre_setup()  # LitServe's own step before setup(): its default unbatch
    device = device_for(worker)
    call_user(api.setup, device)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    steps = _Steps(api)
    return LoadedAPI(
        decode=_refusing(steps.decode),
        predict=_refusing(steps.predict_one),
        predict_batch=_refusing(steps.predict_batch) if steps.batching else None,
        encode=_refusing(steps.encode),
        max_batch=api.max_batch_size,
        batch_timeout_s=api.batch_timeout,
        device=device,
        description=f"{class_name}({args})",
    )


class _Carried:
    """A request's value between two steps, with its LitServe context: the dict a step that
    takes a `context` argument gets (one per request, from decode_request to encode_response)."""

    __slots__ = ("context", "value")

    def __init__(self, value: Any, context: dict[str, Any]) -> None:
        self.value = value
        self.context = context


class _Steps:
    """The API's steps in LitServe's order, each given `context=` where it takes one."""

    NAMES = ("decode_request", "batch", "predict", "unbatch", "encode_response")

    def __init__(self, api: ls.LitAPI) -> None:
        self.api = api
        self.batching = api.max_batch_size > 1
        self.request_model = _request_model(api.decode_request)
        self.with_context = {
            name
            for name in self.NAMES
            if "context" in inspect.signature(getattr(api, name)).parameters
        }

    def _call(self, name: str, value: Any, context: Any) -> Any:
        step = getattr(self.api, name)
        return step(value, context=context) if name in self.with_context else step(value)

    def decode(self, request: Any) -> _Carried:
        context: dict[str, Any] = {}
        if self.request_model is not None:
            request = _validate(self.request_model, request)
        return _Carried(self._call("decode_request", request, context), context)

    def predict_one(self, item: _Carried) -> _Carried:
        """One request: a batch of one where the API batches (its predict always gets one)."""
        if self.batching:
            return self.predict_batch([item])[0]
        return _Carried(self._call("predict", item.value, item.context), item.context)

    def predict_batch(self, items: list[_Carried]) -> list[_Carried]:
        contexts = [item.context for item in items]
        batch = self._call("batch", [item.value for item in items], contexts)
        outputs = list(self._call("unbatch", self._call("predict", batch, contexts), contexts))
        if len(outputs) != len(items):
            raise ValueError(
                f"predict()/unbatch() returned {len(outputs)} outputs for {len(items)} requests"
            )
        return [_Carried(out, ctx) for out, ctx in zip(outputs, contexts, strict=True)]

    def encode(self, item: _Carried) -> Any:
        """encode_response's answer, a pydantic model it returns as plain JSON values."""
        encoded = self._call("encode_response", item.value, item.context)
        dump = getattr(encoded, "model_dump", None)
        return dump(mode="json") if callable(dump) else encoded


def _check_supported(api: ls.LitAPI, class_name: str) -> None:
    """What mllib's server does not do for a LitAPI, said before it serves anything."""
    if api.stream:
        raise MllibError(f"{class_name} streams (stream=True): mllib serves one reply a request")
    if api.enable_async:
        raise MllibError(f"{class_name} is async (enable_async=True): mllib calls it from a thread")
    if api.spec is not None:
        raise MllibError(f"{class_name} has a LitServe spec ({type(api.spec).__name__})")


def _refusing(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step`, with an HTTPException of 4xx (LitServe's way to refuse a request) as BadRequest."""

    @functools.wraps(step)
    def call(*args: Any) -> Any:
        try:
            return step(*args)
        except HTTPException as exc:
            if 400 <= exc.status_code <= 499 and exc.status_code not in BadRequest.RESERVED:
                raise BadRequest(str(exc.detail), status=exc.status_code) from exc
            raise

    return call


def _request_model(decode: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model decode_request's `request` is annotated with: LitServe's endpoint
    parses the body into it (None: the body as JSON)."""
    try:
        hints = typing.get_type_hints(decode)
    except Exception:  # an annotation that does not resolve: LitServe would not use it either
        return None
    model = hints.get("request")
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _validate(model: type[BaseModel], request: Any) -> BaseModel:
    """The body as `model`, or a 422 naming what does not fit."""
    try:
        return model.model_validate(request)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        message = f"the request does not fit {model.__name__}: {problems}"
        raise BadRequest(message, status=422) from None


def device_for(worker: int) -> str:
    """The device a worker's setup() gets, as LitServe names it: "cuda:N" (workers spread over
    the GPUs) when this machine has an NVIDIA GPU, else "cpu"."""
    count = gpu_count()
    return f"cuda:{worker % count}" if count else "cpu"


def gpu_count() -> int:
    """The NVIDIA GPUs this process may use: torch's count when the API imported torch, else
    what `nvidia-smi -L` lists (no torch import here: a CPU API need not have it), within
    CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.cuda.device_count())
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
    return count if listed.returncode == 0 else 0
