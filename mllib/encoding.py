"""The one JSON encoder for predictions, used by `mllib predict` and by serving alike.

numpy arrays and scalars, pandas objects, datetimes and dataclasses become JSON; anything else
is a SerializationError that names the type, so a user knows exactly what predict() returned.
"""

from __future__ import annotations

from typing import Any

import orjson

from mllib.errors import SerializationError

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        if hasattr(value, "to_dict") and hasattr(value, "columns"):
            return value.to_dict(orient="records")
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "isoformat"):
            return value.isoformat()
    if module == "numpy" and hasattr(value, "tolist"):  # values orjson does not take natively
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "__float__") and type(value).__name__ == "Decimal":
        return float(value)
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__}")


def to_json_bytes(value: Any) -> bytes:
    """Encode `value` as JSON bytes, converting numpy/pandas values."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise SerializationError(
            f"The prediction cannot be converted to JSON: {_reason(exc)}",
            hint="Return dicts, lists, strings, numbers, numpy or pandas values from predict().",
        ) from None


def _reason(exc: Exception) -> str:
    cause = exc.__cause__  # what _default raised: the full name of the type it could not convert
    if isinstance(cause, TypeError) and cause.args:
        return f"values of type {cause.args[0]} are not JSON-serialisable"
    return str(exc)


def from_json(data: bytes | str) -> Any:
    """Parse JSON request bodies and files."""
    return orjson.loads(data)
