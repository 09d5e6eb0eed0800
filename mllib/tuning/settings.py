"""A study's settings: the `[tune]` table of mllib.toml, the command line on top of it, checked.

[tune]
metric = "val_loss"
direction = "minimize"
trials = 50
parallel = 4
timeout = "2h"
sampler = "tpe"        # tpe, random, cmaes
pruner = "median"      # median, hyperband, none
[tune.params]
learning_rate = "loguniform:1e-4:1e-1"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mllib.config import Config, read_table
from mllib.errors import ConfigError, UsageError

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("minimize", "maximize")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class TuneSettings:
    """[tune]: the keys `mllib tune` takes as options (the command line wins)."""

    metric: str | None = None
    direction: str | None = None  # default: minimize for loss-like names, else maximize
    trials: int = 20
    parallel: int = 1
    timeout: str | float | None = None  # seconds, or "90s", "30m", "2h", "1d"
    sampler: str = "tpe"
    pruner: str = "median"
    name: str | None = None
    seed: int | None = None  # the sampler's seed; default: the runs' seed (mllib.toml `seed`)
    params: dict[str, Any] = field(default_factory=dict)  # NAME = "KIND:ARGS"

    @classmethod
    def from_config(cls, config: Config) -> TuneSettings:
        return read_table(cls, config, "tune")

    def merged(self, **options: Any) -> TuneSettings:
        """These settings with the options given (not None) on top, then checked."""
        given = {k: v for k, v in options.items() if v is not None and k in _FIELDS}
        return replace(self, **given).checked()

    def checked(self) -> TuneSettings:
        """Refuse values no study can use, each with a one-line usage error."""
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise UsageError(
                f"Unknown direction {self.direction!r}", hint="Use minimize or maximize."
            )
        if self.sampler not in SAMPLERS:
            raise UsageError(
                f"Unknown sampler {self.sampler!r}", hint=f"Use one of: {', '.join(SAMPLERS)}."
            )
        if self.pruner not in PRUNERS:
            raise UsageError(
                f"Unknown pruner {self.pruner!r}", hint=f"Use one of: {', '.join(PRUNERS)}."
            )
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if self.parallel < 1:
            raise UsageError(f"--parallel must be at least 1, got {self.parallel}")
        if self.name is not None and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.name
        ):
            raise UsageError(
                f"Study name {self.name!r} is not a plain name",
                hint="Use letters, digits, '.', '_' and '-' (up to 64), starting with a letter or digit.",
            )
        _ = self.timeout_s  # a duration that does not read is refused here, before anything runs
        return self

    @property
    def timeout_s(self) -> float | None:
        """`timeout` in seconds (None: no limit)."""
        if self.timeout is None:
            return None
        if isinstance(self.timeout, int | float) and not isinstance(self.timeout, bool):
            seconds = float(self.timeout)
        else:
            match = _DURATION.match(str(self.timeout))
            if not match:
                raise UsageError(
                    f"--timeout {self.timeout!r} is not a duration",
                    hint="Use seconds or a number with s, m, h or d: 90, 30m, 2h.",
                )
            seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        from mllib.ranges import POSITIVE

        # a number of 400 digits reads as inf: refused here with NaN and the rest (mllib.ranges)
        return float(POSITIVE.check(seconds, "--timeout", given=str(self.timeout)))

    def param_items(self) -> list[str]:
        """`[tune.params]` as `NAME=KIND:ARGS` items."""
        items = []
        for name, value in self.params.items():
            if not isinstance(value, str):
                raise ConfigError(
                    f'`tune.params.{name}` must be a string such as "loguniform:1e-4:1e-1", '
                    f"got {value!r}"
                )
            items.append(f"{name}={value}")
        return items


_FIELDS = {f.name for f in fields(TuneSettings)}


def default_direction(metric: str) -> str:
    """minimize for names that read as a cost (loss, error, ...), maximize otherwise: the rule
    `runs compare` uses to mark the best value."""
    from mllib.metric_values import lower_is_better

    return "minimize" if lower_is_better(metric) else "maximize"
