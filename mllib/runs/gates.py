"""Gates on a run's evaluation: `--fail-under accuracy=0.9` fails a command (CI, a scheduled
evaluation) when a metric evaluate() returned is under its threshold, or missing.

>>> gates = parse_gates(["accuracy=0.9"])
>>> breaches({"accuracy": 0.85}, gates)
['accuracy 0.85 is under 0.9']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mllib.errors import UsageError

if TYPE_CHECKING:
    from mllib.project import Project

ALERT_CLASS = "evaluation_below_threshold"  # the failure_class tag of a breach's Sentry event


class EvaluationBelowThreshold(Exception):
    """What a Sentry event of a scheduled evaluation's broken gate reports (never raised)."""


def parse_gates(texts: list[str] | None) -> dict[str, float]:
    """{metric: threshold} from NAME=NUMBER texts; a bad one is a usage error naming it."""
    gates: dict[str, float] = {}
    for text in texts or []:
        name, sep, value = text.partition("=")
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if not sep or not name.strip() or not math.isfinite(threshold):
            raise UsageError(
                f"--fail-under {text!r} is not METRIC=NUMBER",
                hint="For example: --fail-under accuracy=0.9 (repeat it for several metrics).",
            )
        gates[name.strip()] = threshold
    return gates


def breaches(eval_metrics: Mapping[str, object], gates: Mapping[str, float]) -> list[str]:
    """One line per gate the metrics do not pass (a missing or NaN metric does not pass)."""
    found = []
    for name, threshold in gates.items():
        value = eval_metrics.get(name)
        number = _number(value)
        if number is None:
            known = ", ".join(sorted(eval_metrics)) or "none"
            found.append(f"{name} was not returned by evaluate() (it returned: {known})")
        elif math.isnan(number) or number < threshold:
            found.append(f"{name} {number:g} is under {threshold:g}")
    return found


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]  # "NaN" spelled as text reads back too
    except (TypeError, ValueError):
        return None


def alert(
    project: Project, message: str, *, failure_class: str = ALERT_CLASS, **tags: object
) -> None:
    """A Sentry event `EvaluationBelowThreshold` for a scheduled evaluation (a broken gate, or a
    schedule that could not run), with the DSN configured for `project`; nothing without one."""
    from mllib import error_reports, sentry_plugin

    dsn = sentry_plugin.environment(project).get(sentry_plugin.DSN_VARIABLE)
    if not dsn or not sentry_plugin.enable(dsn):
        return
    error_reports.report(
        EvaluationBelowThreshold(message), failure_class=failure_class, action="evaluate", **tags
    )
    error_reports.flush()
