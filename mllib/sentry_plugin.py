"""Report a model's failures to Sentry: `from mllib import sentry_plugin; sentry_plugin.enable()`
at the top of model.py.

The DSN comes from `SENTRY_DSN` (the environment, then the project's .env.local) or `[sentry] dsn`
in mllib.toml; with none, enable() does nothing and imports nothing. Inside a run or a
deployment, mllib hands the DSN to the process in `SENTRY_DSN` (see `environment`), so Docker
containers and agents get it too. What is reported: a run's failure (`user_error` when the
model's code raised, `system_error` when mllib or the machine failed), a deployment's predict()
exception (once per request, with its request id) and a model that cannot be loaded, each tagged
with the run or deployment (mllib.error_reports); uncaught exceptions elsewhere, as Sentry does.
Secret params and the DSN are sent as ***.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mllib import error_reports
from mllib.errors import ConfigError
from mllib.project import Project

DSN_VARIABLE = "SENTRY_DSN"
RUN_TAGS_VARIABLE = "MLLIB_RUN_TAGS"  # the run's model, action, runtime and agent (JSON)
# mllib's own loggers: what they log is reported by mllib.error_reports already (once), so the
# Sentry logging integration keeps them as breadcrumbs and never makes events of them.
OWN_LOGGERS = ("mllib", "mllib.*", "litserve", "litserve.*", "uvicorn.error")

_enabled = False


def enable(dsn: str | None = None, **options: Any) -> bool:
    """Start reporting this process's errors to Sentry; returns whether it is on.

    `dsn` overrides the configured one; `options` go to `sentry_sdk.init` (say,
    `traces_sample_rate`). Calling it again changes nothing."""
    global _enabled
    if _enabled:
        return True
    dsn = dsn or configured_dsn()
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations import logging as sentry_logging
    from sentry_sdk.utils import BadDsn

    error_reports.add_secrets([dsn])
    defaults: dict[str, Any] = {
        # Integrations for web frameworks would wrap every request of a deployment: mllib
        # reports predict() failures itself.
        "auto_enabling_integrations": False,
        "data_collection": {"user_info": False},
        "before_send": _before_send,
    }
    environment = os.environ.get("SENTRY_ENVIRONMENT") or error_reports.tags.get("env")
    if environment:
        defaults["environment"] = environment
    try:
        sentry_sdk.init(dsn=dsn, **{**defaults, **options})
    except BadDsn as exc:  # its message never holds the DSN itself
        raise ConfigError(
            f"The Sentry DSN is not valid: {exc}",
            hint="Copy it from your Sentry project's Client Keys (DSN) page into SENTRY_DSN "
            "(.env.local) or [sentry] dsn in mllib.toml.",
        ) from None
    for name in OWN_LOGGERS:
        sentry_logging.ignore_logger_for_events(name)
    error_reports.register(_SentryReporter())
    _enabled = True
    return True


def configured_dsn(project: Project | None = None) -> str | None:
    """`SENTRY_DSN`, else the project's .env.local, else `[sentry] dsn` of its mllib.toml.

    Inside a run or a deployment only `SENTRY_DSN` counts: mllib has resolved it already."""
    dsn = os.environ.get(DSN_VARIABLE)
    if dsn or os.environ.get("MLLIB_RUN_ID") or error_reports.tags.get("deployment"):
        return dsn or None
    project = project or Project.find(Path.cwd())
    return project.env_values("local").get(DSN_VARIABLE) or project.config.sentry.dsn or None


def environment(project: Project, env_target: str = "local") -> dict[str, str]:
    """The variables handing the configured DSN to a run or a server ({} when there is none):
    the shell's `SENTRY_DSN`, else the env file's (.env.local or .env.remote), else mllib.toml's."""
    dsn = (
        os.environ.get(DSN_VARIABLE)
        or project.env_values(env_target).get(DSN_VARIABLE)
        or project.config.sentry.dsn
    )
    return {DSN_VARIABLE: dsn} if dsn else {}


class _SentryReporter:
    def report(self, exc: BaseException, tags: dict[str, str]) -> None:
        import sentry_sdk

        params = {name: str(value) for name, value in error_reports.params.items()}
        param_tags = {f"param.{name}"[:32]: value[:200] for name, value in params.items()}
        try:
            sentry_sdk.capture_exception(
                exc,
                tags={**param_tags, **tags},
                contexts={"mllib": {**tags, "params": params}},
            )
        except Exception:  # a report must never break the run or the server
            pass

    def flush(self, timeout_s: float) -> None:
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout_s)


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Every event leaves with the process's tags, and with secrets as ***."""
    event["tags"] = {**error_reports.tags, **(event.get("tags") or {})}
    return error_reports.scrub(event)
