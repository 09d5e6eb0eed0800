"""Dataset names, `NAME[@VERSION]` references, and the env variable a run's data key becomes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mllib.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit (at most 100)"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset by name, with a version number or None for the latest."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def check_name(name: str) -> str:
    """A dataset name, or a UsageError saying what a name may hold."""
    if not _NAME.fullmatch(name or ""):
        raise UsageError(
            f"{name!r} is not a valid dataset name", hint=f"A dataset name uses {NAME_RULE}."
        )
    return name


def parse_ref(text: str) -> DatasetRef:
    """`mnist`, `mnist@3` or `mnist@latest`."""
    name, sep, version = text.strip().partition("@")
    check_name(name)
    if not sep or version == "latest":
        return DatasetRef(name)
    if not version.isdigit() or int(version) < 1:
        raise UsageError(
            f"{text!r}: the version after @ must be a number such as {name}@3, or `latest`"
        )
    return DatasetRef(name, int(version))


def env_var_for(key: str) -> str:
    """The env variable a run's data key sets: `train` -> TRAIN_DATA; an upper-case key is used as is.

    So `--data train=mnist` and `--data TRAIN_DATA=mnist` both set TRAIN_DATA, the variable a
    `.env.local` data path and `mllib.Param(..., env="TRAIN_DATA")` already use.
    """
    if not _KEY.fullmatch(key):
        raise UsageError(
            f"{key!r} is not a valid data key",
            hint="A data key is a name such as `train` or an env variable such as TRAIN_DATA.",
        )
    return key if key.isupper() else f"{key.upper()}_DATA"


def parse_binding(text: str) -> tuple[str, DatasetRef]:
    """`KEY=NAME[@VERSION]` from `--data`, as (env variable, reference)."""
    key, sep, ref = text.partition("=")
    if not sep or not key or not ref:
        raise UsageError(
            f"--data {text!r} is not KEY=NAME[@VERSION]",
            hint="For example: --data train=mnist@3 (the run gets TRAIN_DATA=<path>).",
        )
    return env_var_for(key.strip()), parse_ref(ref)
