"""mllib.toml: read once, validated, with typed lookups that name the offending key on error."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mllib.errors import ConfigError

CONFIG_FILE = "mllib.toml"

# Top-level keys and tables mllib understands; anything else is most likely a typo.
KNOWN_KEYS = {
    "name": "the model's name in the registry (default: the class name)",
    "model": 'which class to use, e.g. "model.py:MyModel"',
    "seed": "the seed every run starts from (default 0)",
    "params": "param values, below the command line and env variables",
    "runtime": "where runs execute locally: process or docker",
    "registry": "where runs are recorded",
    "store": "where artifacts and datasets are stored",
    "code": "what a code snapshot holds",
    "retry": "retries of system errors",
    "agents": "remote agent hosts",
    "data": "datasets handed to runs",
    "serve": "local serving",
    "deploy": "deployments",
    "loadtest": "load tests",
    "keys": "API keys",
}

# The keys of the tables the core reads. Tables a feature reads through its own settings loader
# ([data], [serve], [deploy], [keys], [loadtest]) are checked there; [params] holds the model's.
TABLE_KEYS = {
    "runtime": {
        "local",
        "cancel_grace_s",
        "base_image",
        "packages",
        "detect_imports",
        "image_repository",
        "memory",
        "cpus",
        "shm_size",
        "network",
        "gpus",
    },
    "registry": {"path"},
    "store": {"path"},
    "code": {"exclude", "max_file_mb"},
    "retry": {"max_attempts", "backoff_s", "unreachable_after_s"},
}

T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    """The parsed mllib.toml of a project (empty when the project has none)."""

    path: Path | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: T, kind: type | tuple[type, ...] | None = None) -> T:
        """Look up a dotted key (`runtime.local`), checking its type against the default's."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        expected = kind or (type(default) if default is not None else None)
        if expected is float:
            expected = (int, float)
        if expected is not None and (
            not isinstance(node, expected)
            or (isinstance(node, bool) and expected in (int, (int, float)))
        ):
            raise ConfigError(
                f"{self.where}: `{key}` must be {_type_words(expected)}, got {node!r}",
                hint=f"Fix `{key}` in {self.where}.",
            )
        return node

    def section(self, name: str) -> dict[str, Any]:
        """A table such as `[params]`, or {} when absent."""
        value = self.get(name, {}, dict)
        return dict(value)

    @property
    def where(self) -> str:
        return str(self.path) if self.path else CONFIG_FILE

    @property
    def name(self) -> str | None:
        return self.get("name", None, str)

    @property
    def model(self) -> str | None:
        return self.get("model", None, str)

    @property
    def seed(self) -> int:
        return self.get("seed", 0, int)

    @property
    def params(self) -> dict[str, Any]:
        return self.section("params")


def _type_words(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    names |= {dict: "a table", list: "a list"}
    if isinstance(kind, tuple):
        return (
            "a number"
            if set(kind) == {int, float}
            else " or ".join(names.get(k, k.__name__) for k in kind)
        )
    return names.get(kind, kind.__name__)


def load_config(path: Path) -> Config:
    """Parse mllib.toml at `path`; a missing file is an empty config."""
    if not path.is_file():
        return Config(None, {})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="Fix the file and try again."
        ) from exc
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        known = ", ".join(sorted(KNOWN_KEYS))
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}",
            hint=f"Known keys: {known}. See mllib.toml.example.",
        )
    for table, keys in TABLE_KEYS.items():
        if table not in data:
            continue
        if not isinstance(data[table], dict):
            raise ConfigError(
                f"{path}: `{table}` must be a table ([{table}]), got {data[table]!r}",
                hint="See mllib.toml.example.",
            )
        unknown = sorted(set(data[table]) - keys)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) in [{table}]: {', '.join(unknown)}",
                hint=f"Known keys: {', '.join(sorted(keys))}. See mllib.toml.example.",
            )
    return Config(path, data)
