"""Where the failures of runs and servers go besides their logs: reporters that a plugin registers
(Sentry's, mllib.sentry_plugin), and what each report says about where it happened.

The worker and the serving processes call `report` where they already handle a failure; with no
reporter registered (the default) it returns at once. What a report carries is set by whoever
knows it: the worker sets the run's tags and params, a server its deployment's. `secrets` are
values no report may hold (secret params, the DSN): a reporter writes `***` in their place.

>>> class Printer:
...     def report(self, exc, tags): print(type(exc).__name__, tags["failure_class"])
...     def flush(self, timeout_s): pass
>>> register(Printer()); report(ValueError("x"), failure_class=USER_ERROR)
ValueError user_error
>>> _reporters.clear()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from mllib.redaction import PROCESS

USER_ERROR = "user_error"  # the model's code raised
SYSTEM_ERROR = "system_error"  # mllib itself, or the machine, failed


class Reporter(Protocol):
    """Sends one failure somewhere (a Sentry project); never raises."""

    def report(self, exc: BaseException, tags: dict[str, str]) -> None: ...
    def flush(self, timeout_s: float) -> None: ...


_reporters: list[Reporter] = []
tags: dict[str, str] = {}  # run_id, model, action, runtime, agent; env, version, deployment
params: dict[str, Any] = {}  # the run's params as recorded (secret ones as ***)


def register(reporter: Reporter) -> None:
    """Send every later report to `reporter` too."""
    _reporters.append(reporter)


def enabled() -> bool:
    return bool(_reporters)


def set_tags(**values: object) -> None:
    """Tag every later report (None values are left out)."""
    tags.update({k: str(v) for k, v in values.items() if v is not None})


def set_params(values: Mapping[str, Any], secret_values: Mapping[str, Any] = {}) -> None:
    """The run's params as recorded; `secret_values` (name -> the real value) never leave."""
    params.clear()
    params.update(values)
    add_secrets(secret_values.values())


def add_secrets(values: Any) -> None:
    """Values that reports must hold only as *** (the process's one redactor: what the worker
    keeps out of errors and output is kept out of reports too, spelled as a repr or JSON)."""
    PROCESS.add(str(v) for v in values if v is not None and str(v))


def report(exc: BaseException, *, failure_class: str, **extra: object) -> None:
    """Report `exc` to every reporter, tagged with `failure_class` and `extra` (a request id...)."""
    if not _reporters:
        return
    event_tags = {**tags, "failure_class": failure_class}
    event_tags.update({k: str(v) for k, v in extra.items() if v is not None})
    for reporter in _reporters:
        reporter.report(exc, event_tags)


def flush(timeout_s: float = 2.0) -> None:
    """Wait up to `timeout_s` for reports still being sent (before a process exits)."""
    for reporter in _reporters:
        reporter.flush(timeout_s)


def scrub(value: Any) -> Any:
    """`value` (strings, lists, dicts nested) with every secret replaced by ***."""
    if not PROCESS.values:
        return value
    if isinstance(value, str):
        return PROCESS.text(value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v) for v in value)
    return value
