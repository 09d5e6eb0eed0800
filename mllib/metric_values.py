"""Metric values that are not finite (NaN from a diverged training, ±inf) kept as they are on
their way through the event stream, the registry and JSON output, none of which take them.

Events and JSON output spell them "NaN", "Infinity" and "-Infinity" (JavaScript's names, which
`float()` reads back). SQLite turns a NaN REAL into NULL, so the registry keeps NaN as the text
'NaN' in its REAL column (left out of MIN/MAX) and ±inf as REAL; a NULL stays "no value".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeVar

NAN = "NaN"
_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def spell(value: float) -> float | str:
    """A float as events and JSON can carry it: non-finite ones by name."""
    if math.isnan(value):
        return NAN
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def to_stored(value: Any) -> float | str | None:
    """A metric value (a float, or its spelled name from an event) as the registry keeps it."""
    if value is None:
        return None
    number = _NAMES[value] if isinstance(value, str) else float(value)
    return NAN if math.isnan(number) else number


def from_stored(value: Any) -> float | None:
    """A registry metric value as a float (NaN again), or None for no value."""
    if isinstance(value, str):
        return _NAMES.get(value, math.nan)
    return value


def json_safe(data: Any) -> Any:
    """`data` with every non-finite float spelled by name, so it prints as valid JSON."""
    if isinstance(data, float):
        return spell(data)
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


# Metrics whose names contain one of these are better when lower; all others when higher.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "latency", "time")


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


K = TypeVar("K")


def best_of(values: Mapping[K, float | None], metric: str) -> K | None:
    """The key of the best value of `metric` (lowest for loss-like names, else highest), leaving
    out missing and NaN values; None when no value is left. What `runs compare` marks with a
    star and `--best METRIC` picks."""
    present = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if not present:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(present, key=present.__getitem__)
