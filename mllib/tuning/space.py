"""The search space: `NAME=KIND:ARGS` strings, checked against the model's params, and turned into
Optuna distributions.

| string                      | values                                             |
|-----------------------------|----------------------------------------------------|
| `uniform:LO:HI`             | a float between LO and HI                          |
| `loguniform:LO:HI`          | a float between LO and HI on a log scale (LO > 0)  |
| `int:LO:HI[:STEP]`          | an integer from LO to HI (both included)           |
| `logint:LO:HI`              | an integer on a log scale (LO >= 1)                |
| `choice:A,B,...`            | one of the values, read as the param's type        |

Every mistake is a one-line usage error naming the string and what to write instead.

>>> space = parse_space(["lr=loguniform:1e-4:1e-1"], target.info.params)  # doctest: +SKIP
>>> space["lr"].text, space["lr"].distribution()  # doctest: +SKIP
('loguniform:0.0001:0.1', FloatDistribution(high=0.1, log=True, low=0.0001, step=None))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllib.errors import ParamError, UsageError
from mllib.params import ParamSpec, convert

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

KINDS = {
    "uniform": "uniform:LO:HI",
    "loguniform": "loguniform:LO:HI",
    "int": "int:LO:HI[:STEP]",
    "logint": "logint:LO:HI",
    "choice": "choice:A,B,...",
}
NUMBER_TYPES = ("int", "float", "any")


@dataclass(frozen=True)
class Dimension:
    """One param's range: `kind` (a key of KINDS) with its bounds, or its choices."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        """The canonical string, as `--param NAME=...` takes it."""
        if self.kind == "choice":
            return "choice:" + ",".join(_choice_text(c) for c in self.choices)
        step = f":{self.step}" if self.step not in (None, 1) else ""
        return f"{self.kind}:{self.low}:{self.high}{step}"

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution that samples this param (Optuna imported now)."""
        from mllib.tuning.storage import distribution

        return distribution(self.kind, self.low, self.high, self.step, self.choices)


Space = dict[str, Dimension]


def parse_space(items: Iterable[str], specs: Mapping[str, ParamSpec], where: str = "") -> Space:
    """`NAME=KIND:ARGS` items (`--param`, or `[tune] params` rendered the same way) checked
    against the model's declared params; `where` names their source in errors."""
    space: Space = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _bad(item, "is not NAME=KIND:ARGS", where)
        if name in space:
            raise _bad(item, f"gives `{name}` a second range", where)
        space[name] = parse_dimension(name, value.strip(), specs, where)
    return space


def parse_dimension(
    name: str, text: str, specs: Mapping[str, ParamSpec], where: str = ""
) -> Dimension:
    """One param's range from `KIND:ARGS`, checked against its declared type."""
    item = f"{name}={text}"
    spec = specs.get(name)
    if spec is None:
        from difflib import get_close_matches

        close = get_close_matches(name, list(specs), n=1)
        mean = f" (did you mean {close[0]}?)" if close else ""
        declared = ", ".join(specs) or "none"
        raise UsageError(
            f"{_label(item, where)}: the model declares no param `{name}`{mean}",
            hint=f"Its params: {declared}.",
        )
    if spec.secret:
        raise _bad(item, f"`{name}` is a secret param: it cannot be tuned", where)
    kind, sep, args = text.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        from difflib import get_close_matches

        close = get_close_matches(kind, list(KINDS), n=1)
        mean = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"{_label(item, where)}: unknown distribution {kind!r}{mean}",
            hint="Use one of: " + ", ".join(KINDS.values()) + ".",
        )
    if not sep or not args.strip():
        raise _bad(item, f"needs {KINDS[kind]}", where)
    if kind == "choice":
        return _choices(name, args, spec, item, where)
    if spec.type_name not in NUMBER_TYPES:
        raise _bad(item, f"`{name}` is a {spec.type_name}: use choice:A,B,...", where)
    if kind in ("uniform", "loguniform") and spec.type_name == "int":
        raise _bad(item, f"`{name}` is an int: use int:LO:HI or logint:LO:HI", where)
    parts = [p.strip() for p in args.split(":")]
    if len(parts) not in ((2, 3) if kind == "int" else (2,)):
        raise _bad(item, f"needs {KINDS[kind]}", where)
    integer = kind in ("int", "logint")
    numbers = [_number(p, integer, item, where) for p in parts]
    low, high = numbers[0], numbers[1]
    if not low < high:
        raise _bad(item, f"needs LO < HI, got {low} and {high}", where)
    if kind == "loguniform" and low <= 0:
        raise _bad(item, f"a log scale needs LO > 0, got {low}", where)
    if kind == "logint" and low < 1:
        raise _bad(item, f"a log scale needs LO >= 1, got {low}", where)
    step = None
    if len(numbers) == 3:
        step = int(numbers[2])
        if step < 1 or (high - low) % step:
            raise _bad(item, f"STEP must be >= 1 and divide HI - LO, got {step}", where)
    return Dimension(name, kind, low, high, step)


def _choices(name: str, args: str, spec: ParamSpec, item: str, where: str) -> Dimension:
    raw = [a.strip() for a in args.split(",")]
    if any(not a for a in raw):
        raise _bad(item, "has an empty choice", where)
    try:
        values = tuple(convert(name, a, spec.type_name) for a in raw)
    except ParamError as exc:
        raise _bad(item, f"{exc.message[0].lower()}{exc.message[1:]}", where) from None
    if len(set(map(repr, values))) != len(values):
        raise _bad(item, "lists a choice twice", where)
    if any(not isinstance(v, str | int | float | bool) or v is None for v in values):
        raise _bad(item, "choices must be numbers, strings or booleans", where)
    return Dimension(name, "choice", choices=values)


def _number(text: str, integer: bool, item: str, where: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise _bad(item, f"{text!r} is not a number", where) from None
    if not math.isfinite(value):
        raise _bad(item, f"{text!r} is not a finite number", where)
    if integer:
        if not value.is_integer():
            raise _bad(item, f"{text!r} is not a whole number", where)
        return int(value)
    return value


def _choice_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _label(item: str, where: str) -> str:
    return f"--param {item}" if not where else f"{item} ({where})"


def _bad(item: str, why: str, where: str) -> UsageError:
    return UsageError(
        f"{_label(item, where)}: {why}", hint="Ranges: " + ", ".join(KINDS.values()) + "."
    )


def space_texts(space: Space) -> dict[str, str]:
    """name -> canonical string, as the registry records a study's space."""
    return {name: dim.text for name, dim in space.items()}
