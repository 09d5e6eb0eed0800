"""A deployment's own processes (its controller, its supervisor) writing to the audit log
(`mllib deploy history`) and their log at once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mllib.serving.control.fleet import FleetSpec


def record(
    spec: FleetSpec, log: logging.Logger, *, action: str, result: str, reason: str, row: str,
    model: str, version: int | None, user: str | None = None, **detail: Any,
) -> None:  # fmt: skip
    """One event of deployment row `row`: a log line, and a row of the audit log (the log
    line alone when the registry is busy or gone)."""
    from mllib.registry.db import Registry
    from mllib.serving import audit
    from mllib.serving.clock import SystemClock

    log.info(f"{action} {result}: {reason}", extra={"event": action})
    try:
        reg = Registry.open(Path(spec.registry_path))
        try:
            audit.record(
                reg, SystemClock(), user=user or "mllib", action=action, result=result,
                env=spec.env, model=model, version=version, deployment_id=row, reason=reason,
                detail={k: v for k, v in detail.items() if v is not None} or None,
            )  # fmt: skip
        finally:
            reg.close()
    except Exception:  # the log line above still says it
        log.exception("could not record an event in the audit log", extra={"event": "audit_error"})
