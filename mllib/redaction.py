"""Secret param values kept out of what mllib stores and prints, even where the model's own code
put them: an exception message, a traceback, a line it printed.

The worker redacts the errors it records (the registry's `error` column and events.jsonl come
from them) and what it prints of them; the local backend's log pump (mllib.runs.local) redacts
the run's output on its way to output.log and the terminal, whatever wrote it (the model, a
library, a subprocess). Both
know the values the same way: `secret_values` of the model's declared params, from the command
line, the environment (env files included), mllib.toml and the declared defaults.

>>> redactor = Redactor(["hf_S3CR3T"])
>>> redactor.text("401: bad token hf_S3CR3T")
'401: bad token ***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MARKER = "***"  # mllib.params.SECRET_MARKER
MIN_LENGTH = 4  # shorter values would redact ordinary text; no credential is that short


class Redactor:
    """Replaces every known secret value (and its repr and JSON spellings) with `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        for value in values:
            if len(value) >= MIN_LENGTH:
                self.values |= {value, *_spellings(value)}
        forms = sorted(self.values, key=len, reverse=True)  # the longest match first
        self._text = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._bytes = re.compile(b"|".join(re.escape(f.encode()) for f in forms)) if forms else None

    def text(self, text: str) -> str:
        return self._text.sub(MARKER, text) if self._text else text

    def data(self, data: bytes) -> bytes:
        return self._bytes.sub(MARKER.encode(), data) if self._bytes else data

    def stream(self) -> ByteStream:
        """A redactor for output arriving in chunks, where a value may be cut in two."""
        return ByteStream(self)


class ByteStream:
    """`feed` chunks, get them back redacted; a tail that may be the start of a secret is held
    until the next chunk (or `flush`), so a value split across two reads is still caught."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.pending = b""
        encoded = [v.encode() for v in redactor.values]
        self.prefixes = {v[:i] for v in encoded for i in range(1, len(v))}
        self.longest = max(map(len, encoded), default=0)

    def feed(self, chunk: bytes) -> bytes:
        if not self.redactor.values:
            return chunk
        data = self.redactor.data(self.pending + chunk)
        ends = range(min(len(data), self.longest - 1), 0, -1)
        hold = next((n for n in ends if data[-n:] in self.prefixes), 0)
        self.pending = data[len(data) - hold :] if hold else b""
        return data[: len(data) - hold] if hold else data

    def flush(self) -> bytes:
        data, self.pending = self.redactor.data(self.pending), b""
        return data


PROCESS = Redactor()  # what this process must never let out: the worker's errors, reports


def secret_values(
    specs: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    cli: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> set[str]:
    """The values a run's secret params may hold (`specs`: name -> mllib.params.ParamSpec):
    given on the command line, in their env variable, in mllib.toml `[params]`, or declared as
    the default."""
    found = set()
    for name, spec in specs.items():
        if not spec.secret:
            continue
        candidates = [(cli or {}).get(name), (config or {}).get(name), spec.default]
        if spec.env:
            candidates.append(environ.get(spec.env))
        found |= {str(v) for v in candidates if v not in (None, "") and not isinstance(v, bool)}
    return found


def _spellings(value: str) -> set[str]:
    """How a value shows up in text besides itself: its repr (tracebacks show `'...'` with
    escapes) and its JSON string (an event line)."""
    import json

    return {repr(value)[1:-1], json.dumps(value)[1:-1]} - {value}
