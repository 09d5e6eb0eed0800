"""Run one model action (train, evaluate, predict) in this process and report through the event stream.

Runtimes start this as `python -m mllib.worker --run-dir RUN_DIR --code-dir CODE_DIR`, unchanged
whether it runs as a child process, in a container or on an agent host. Exit codes: 0 success,
1 user error, 3 internal (system) error, 143 cancelled.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mllib import error_reports, tracking
from mllib.encoding import from_json, to_json_bytes
from mllib.errors import BadRequest, MllibError
from mllib.metric_values import spell
from mllib.params import apply, declared_params, resolve
from mllib.persistence import has_custom_persistence, load_model, save_model
from mllib.protocol import events
from mllib.protocol.argv import parse_worker_argv
from mllib.protocol.events import EventWriter
from mllib.protocol.failure import (
    EXIT_CANCELLED,
    EXIT_SUCCEEDED,
    EXIT_SYSTEM_ERROR,
    EXIT_USER_ERROR,
    SYSTEM_ERROR,
    USER_ERROR,
)
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.redaction import PROCESS, secret_values
from mllib.worker.seeding import seed_libraries
from mllib.worker.tracebacks import user_traceback

# The run's secret values, kept out of the errors this worker records and prints.
REDACTOR = PROCESS  # the same values kept out of reports (mllib.error_reports)


class UserCodeError(Exception):
    """An exception raised by the user's code; `__cause__` holds the original."""


class Cancelled(BaseException):
    """Raised in the worker when the supervisor asks it to stop (SIGTERM)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Cancelled()


def call_user(fn: Callable[..., Any], *args: Any) -> Any:
    """Call into model code, marking anything it raises as the user's (except a cancel)."""
    try:
        return fn(*args)
    except Cancelled:
        raise
    except BaseException as exc:
        raise UserCodeError(str(exc)) from exc


def import_model_module(path: Path) -> Any:
    """Import the model file as a module named after it, so pickles refer to `model.MyModel`."""
    name = path.stem
    if name in sys.modules or name in sys.stdlib_module_names or not name.isidentifier():
        name = "mllib_user_" + re.sub(r"\W", "_", name)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise MllibError(f"Cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    call_user(spec.loader.exec_module, module)
    return module


def _check_eval_result(result: Any) -> dict[str, float]:
    if not isinstance(result, dict):
        raise MllibError(
            f"evaluate() must return a dict of metric name -> number, got {type(result).__name__}",
            hint="For example: return {'accuracy': 0.93}",
        )
    checked = {}
    for name, value in result.items():
        if isinstance(value, str | bytes | bool) or value is None:
            raise MllibError(
                f"evaluate() returned {name!r}: {value!r} ({type(value).__name__}), which is not a number",
                hint="Every value of evaluate()'s dict must be a number.",
            )
        try:
            checked[str(name)] = float(value)
        except (TypeError, ValueError):
            raise MllibError(
                f"evaluate() returned {name!r} of type {type(value).__name__}, which is not a number",
                hint="Every value of evaluate()'s dict must be a number.",
            ) from None
    return checked


def run(spec: RunSpec, folder: RunFolder, code_dir: Path, writer: EventWriter) -> None:
    """Execute the spec's actions; raises UserCodeError/MllibError/Cancelled on failure."""
    secret_cli = folder.read_secret_params(remove=True)  # on disk no longer than this
    _know_secrets(spec, code_dir, secret_cli)
    seed_libraries(spec.seed)  # numpy and torch too, even when the model imports them later
    module = import_model_module(code_dir / spec.model_file)
    cls = getattr(module, spec.model_class, None)
    if cls is None:
        raise MllibError(f"{spec.model_file} defines no class {spec.model_class!r}")
    obj = None
    if "train" in spec.actions:
        obj = call_user(cls)
        cli = {**spec.cli_params, **secret_cli}
        resolved = resolve(declared_params(obj), cli, config=spec.config_params)
        REDACTOR.add(str(resolved.values[name]) for name in resolved.secret)
        apply(obj, resolved)
        writer.emit(  # secrets as a marker: the event file and the registry never hold them
            events.PARAMS,
            values=resolved.recorded,
            sources=resolved.sources,
            secret=sorted(resolved.secret),
        )
        if tracking._active is not None:
            tracking._active.params = dict(resolved.recorded)
        error_reports.set_params(
            resolved.recorded, {name: resolved.values[name] for name in resolved.secret}
        )
        writer.emit(events.PHASE, phase="train")
        train = getattr(obj, "train", None)
        if not callable(train):  # a library base class did not bring one after all
            raise MllibError(
                f"{spec.model_class} has no train() method", hint="Add train(self) to the class."
            )
        call_user(train)
        writer.emit(events.PHASE, phase="save")
        # A custom save() is the user's code; pickling problems are reported by save_model itself.
        save = call_user if has_custom_persistence(cls) else _call
        fmt = save(save_model, obj, folder.model_dir, resolved.secret)
        writer.emit(events.MODEL_SAVED, format=fmt)
    if obj is None and spec.input_model:
        obj = call_user(load_model, cls, folder.path / spec.input_model)
    if "evaluate" in spec.actions:
        method = _evaluation_method(obj)
        if method is None:
            raise MllibError(
                f"{spec.model_class} has no evaluate() method", hint="Add evaluate(self) -> dict."
            )
        writer.emit(events.PHASE, phase="evaluate")
        metrics = _check_eval_result(call_user(method))
        writer.emit(events.EVAL_METRICS, metrics={k: spell(v) for k, v in metrics.items()})
    if "predict" in spec.actions:
        request = from_json(folder.request_file.read_bytes())
        result = call_user(obj.predict, request)
        out = folder.prediction_file
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(to_json_bytes(result))


def _evaluation_method(obj: Any) -> Callable[[], Any] | None:
    """The model's evaluate(), else its test() (the seed's spelling); None when it has neither."""
    from mllib.discovery import EVALUATE_NAMES

    for name in EVALUATE_NAMES:
        method = getattr(obj, name, None)
        if callable(method):
            return method
    return None


def missing_module_hint(module: str) -> str:
    """What to do about a module the run's environment lacks, for the runtime it ran in."""
    top = module.split(".")[0]
    runtime = os.environ.get("MLLIB_RUNTIME", "process")
    declare = (
        f"add the package that provides {top!r} to requirements.txt (or [runtime] packages in "
        "mllib.toml)"
    )
    if runtime in ("venv", "docker"):
        where = "venv" if runtime == "venv" else "image"
        return (
            f"the run's {where} holds the project's declared dependencies and the packages its "
            f"code imports that the submitting machine has installed: {declare}, or install it "
            "where you run mllib"
        )
    return f"install it into this Python environment, and {declare} so other runtimes have it too"


def _record_environment(writer: EventWriter) -> None:
    """Record where the run runs (mllib.worker.environment); never fail the run over it."""
    from mllib.worker.environment import describe_environment

    try:
        writer.emit(events.ENVIRONMENT, **describe_environment())
    except Exception as exc:
        writer.emit(events.ENVIRONMENT, error=f"{type(exc).__name__}: {exc}")


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _know_secrets(spec: RunSpec, code_dir: Path, secret_cli: dict[str, Any]) -> None:
    """The secret values this run may hold, known before the model's code runs (its import or
    __init__ may fail with one in the message): declared params read from the source."""
    from mllib.discovery import find_model

    try:
        specs = find_model(code_dir / spec.model_file, spec.model_class).params
    except MllibError:
        specs = {}
    REDACTOR.add(
        secret_values(specs, environ=os.environ, cli=secret_cli, config=spec.config_params)
    )


def main(argv: list[str] | None = None) -> int:
    run_dir, code_dir = parse_worker_argv(argv)
    folder = RunFolder(run_dir)
    os.environ.update(folder.take_job_env())  # before the model's libraries read any of it
    spec = folder.read_spec()
    signal.signal(signal.SIGTERM, _on_sigterm)
    writer = EventWriter(folder.events_file)
    folder.artifact_dir.mkdir(parents=True, exist_ok=True)
    tracking._set_active(tracking.ActiveRun(spec.run_id, folder.artifact_dir, writer))
    error_reports.set_tags(run_id=spec.run_id, action="+".join(spec.actions), **run_tags())
    recorder = threading.Thread(target=_record_environment, args=(writer,), daemon=True)
    recorder.start()  # while the model loads
    code = EXIT_SUCCEEDED
    try:
        run(spec, folder, code_dir, writer)
    except Cancelled:
        writer.emit(events.CANCELLED)
        code = EXIT_CANCELLED
    except UserCodeError as wrapped:
        exc = wrapped.__cause__ or wrapped
        if isinstance(exc, BadRequest) and spec.actions == ["predict"]:
            # predict() refused its request: the caller's mistake, said in the model's words
            message = REDACTOR.text(exc.message)
            writer.emit(
                events.ERROR, failure_class=USER_ERROR, message=message, bad_request=exc.status
            )
            code = EXIT_USER_ERROR
        else:
            code = _report_user_error(writer, exc, code_dir)
    except MllibError as exc:
        message = REDACTOR.text(str(exc))
        print(f"Error: {message}", file=sys.stderr)
        writer.emit(events.ERROR, failure_class=USER_ERROR, message=message, traceback=None)
        error_reports.report(exc, failure_class=USER_ERROR)
        code = EXIT_USER_ERROR
    except BaseException as exc:  # a bug in mllib itself, or the machine failing us
        text = REDACTOR.text("".join(traceback.format_exception(exc)))
        print(f"mllib internal error:\n{text}", file=sys.stderr)
        writer.emit(
            events.ERROR,
            failure_class=SYSTEM_ERROR,
            message=REDACTOR.text(f"{type(exc).__name__}: {exc}"),
            traceback=text,
        )
        error_reports.report(exc, failure_class=SYSTEM_ERROR)
        code = EXIT_SYSTEM_ERROR
    finally:
        tracking._set_active(None)
        recorder.join(timeout=30)
        error_reports.flush()
        writer.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _disk_full(exc: BaseException) -> bool:
    """A full disk is the machine failing the run, not its code: a system error, like memory."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def run_tags() -> dict[str, str]:
    """The run's model, action, runtime and agent, as its supervisor handed them over."""
    try:
        tags = json.loads(os.environ.get("MLLIB_RUN_TAGS") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in tags.items() if v is not None}


def _report_user_error(writer: EventWriter, exc: BaseException, code_dir: Path) -> int:
    text = REDACTOR.text(user_traceback(exc, code_dir))
    print(text, file=sys.stderr, end="")
    message = REDACTOR.text("".join(traceback.format_exception_only(exc)).strip())
    if isinstance(exc, MemoryError) or _disk_full(exc):
        what = "Out of memory" if isinstance(exc, MemoryError) else "The disk is full"
        writer.emit(
            events.ERROR,
            failure_class=SYSTEM_ERROR,
            message=f"{what}: {message}",
            traceback=text,
        )
        error_reports.report(exc, failure_class=SYSTEM_ERROR)
        return EXIT_SYSTEM_ERROR
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        message += f" ({missing_module_hint(exc.name)})"
    elif isinstance(exc, SystemExit):
        message = REDACTOR.text(
            f"model code called sys.exit({exc.code!r}); return from the method instead"
        )
    elif isinstance(exc, KeyboardInterrupt):
        message = "model code raised KeyboardInterrupt"
    writer.emit(events.ERROR, failure_class=USER_ERROR, message=message, traceback=text)
    error_reports.report(exc, failure_class=USER_ERROR)
    return EXIT_USER_ERROR
