"""mllib.toml: read once, validated, with typed lookups that name the offending key on error.

Every table of settings is a frozen dataclass read by `read_table`: its fields are the table's
keys, their defaults the defaults, their annotations the types accepted; an unknown key is an
error that lists the known ones. The core's tables ([runtime], [code], [retry], [registry],
[store], [sentry]) are declared here and checked when the file is read; a feature's tables live
with the feature ([data] in mllib.datasets.settings; [serve], [deploy], [rollout], [keys],
[loadtest] in
mllib.serving.control.settings) and are checked when the feature reads them.
"""

from __future__ import annotations

import math
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar, get_args, get_origin, get_type_hints

from mllib.errors import ConfigError

CONFIG_FILE = "mllib.toml"

# Top-level keys and tables mllib understands; anything else is most likely a typo.
KNOWN_KEYS = {
    "name": "the model's name in the registry (default: the class name)",
    "model": 'which class to use, e.g. "model.py:MyModel"',
    "seed": "the seed every run starts from (default 0)",
    "params": "param values, below the command line and env variables",
    "runtime": "where runs execute locally: process, venv or docker",
    "registry": "where runs are recorded",
    "store": "where artifacts and datasets are stored",
    "code": "what a code snapshot holds",
    "retry": "retries of system errors",
    "agents": "remote agent hosts",
    "ray": "the Ray cluster of --runtime ray",
    "data": "datasets handed to runs",
    "serve": "local serving, and the replicas of deployments",
    "deploy": "deployments",
    "rollout": "canaries, A/B tests and shadows: how they are judged and promoted",
    "loadtest": "load tests",
    "keys": "API keys",
    "tune": "hyperparameter studies (mllib tune)",
    "sentry": "where mllib.sentry_plugin reports errors",
}

T = TypeVar("T")


# -- the core's tables ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeSettings:
    """[runtime]: where runs execute locally, and the image and container of docker runs."""

    local: str = "auto"  # auto, process, venv or docker
    remote: str = "ssh"  # where --remote runs go: ssh (agent hosts) or ray (a Ray cluster)
    cancel_grace_s: float = 10.0  # a cancelled run gets this long to stop before it is killed
    base_image: str = "mllib/base:bookworm-py3"
    image_repository: str = "mllib/env"  # MLLIB_IMAGE_REPOSITORY wins
    packages: list = field(default_factory=list)  # requirement strings added to the image
    detect_imports: bool = True  # installed packages the code imports go into the image too
    env_cache_gb: float = 20.0  # venvs kept for the venv runtime, least recently used go first
    per_step: bool = True  # evaluation and prediction environments hold what their code reaches
    memory: str | int | None = None  # e.g. "8g"; none: no limit
    cpus: float | None = None  # e.g. 2.5; none: no limit
    shm_size: str | int = "1g"  # /dev/shm (PyTorch DataLoader workers share tensors through it)
    network: str = "host"  # host: what a child process sees (localhost services, proxies)
    gpus: str = "auto"  # auto: every GPU nvidia-smi lists; none: CPU only


@dataclass(frozen=True)
class CodeSettings:
    """[code]: what a run's code snapshot holds."""

    exclude: list = field(default_factory=list)  # gitignore patterns, beside .gitignore's
    max_file_mb: float = 20.0  # larger files are left out (and listed)


@dataclass(frozen=True)
class RetrySettings:
    """[retry]: system errors of remote runs are retried, on another agent when there is one."""

    max_attempts: int = 3
    backoff_s: float = 5.0  # the first pause; doubled after each attempt
    unreachable_after_s: float = 120.0  # an agent silent this long fails its attempt


@dataclass(frozen=True)
class PathSettings:
    """[store]: where artifacts and datasets are stored."""

    path: str | None = None  # relative to mllib.toml's folder; default inside .mllib/


@dataclass(frozen=True)
class RegistrySettings(PathSettings):
    """[registry]: where runs are recorded, and how long a command waits for another's write."""

    busy_timeout_s: float = 60.0  # then the command fails (exit 3) saying the registry is locked

    def __post_init__(self) -> None:
        if not self.busy_timeout_s > 0:
            raise ConfigError(
                f"{CONFIG_FILE}: `registry.busy_timeout_s` got {self.busy_timeout_s:g}: allowed "
                "is a number greater than 0"
            )


@dataclass(frozen=True)
class SentrySettings:
    """[sentry]: where `mllib.sentry_plugin.enable()` reports (SENTRY_DSN, env files included, wins)."""

    dsn: str | None = None  # a secret: handed to runs and servers in their environment only


class Table(Generic[T]):
    """A table of mllib.toml as an attribute of Config, read into dataclass `cls` on access."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, config: Config, owner: type | None = None) -> T:
        value = read_table(self.cls, config, self.name)
        # Kept on the instance, which shadows this descriptor from then on: a Config's data does
        # not change, and a study reads its tables for every trial. A table in error is read
        # (and raises) on each access.
        config.__dict__[self.name] = value
        return value


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
        if expected is None:
            return node
        return _checked(node, expected if isinstance(expected, tuple) else (expected,), key, self)

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
        from mllib.ranges import SEED

        seed = self.get("seed", 0, int)
        if not SEED.contains(seed):
            raise ConfigError(f"{self.where}: `seed` got {seed}: allowed is {SEED}")
        return seed

    @property
    def params(self) -> dict[str, Any]:
        return self.section("params")

    # The core's tables, read (and checked) on access: `config.runtime.local`.
    runtime = Table(RuntimeSettings)
    code = Table(CodeSettings)
    retry = Table(RetrySettings)
    registry = Table(RegistrySettings)
    store = Table(PathSettings)
    sentry = Table(SentrySettings)


# The tables checked when mllib.toml is read; [params] holds the model's own keys.
CORE_TABLES = {name: t.cls for name, t in vars(Config).items() if isinstance(t, Table)}


def read_table(
    cls: type[T], config: Config, table: str, *, non_negative: bool = False, more: bool = False
) -> T:
    """Dataclass `cls` filled from `[table]` (a dotted name for a nested one, `deploy.prod`).

    Each key is checked against its field's annotation (a field that is itself a dataclass is a
    nested table); a key `cls` lacks is an error listing the known keys, unless `more` (the table
    holds other things as well, as [data] holds dataset bindings). `non_negative` refuses
    negative numbers."""
    raw = config.get(table, {}, dict)
    hints = _type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k in raw if k not in known)
    if unknown and not more:
        raise ConfigError(
            f"{config.where}: unknown key(s) in [{table}]: {', '.join(unknown)}",
            hint=f"Known keys: {', '.join(sorted(known))}. See mllib.toml.example.",
        )
    values = {}
    for name in known & set(raw):
        key, hint = f"{table}.{name}", hints[name]
        if is_dataclass(hint):
            values[name] = read_table(hint, config, key, non_negative=non_negative)  # type: ignore[arg-type]
            continue
        value = _checked(raw[name], _kinds(hint), key, config)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if non_negative and number and value < 0:
            raise ConfigError(f"{config.where}: `{key}` must not be negative")
        values[name] = value
    return cls(**values)


@cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A settings dataclass's field types, worked out once (tables are read on every access)."""
    return get_type_hints(cls)


def _kinds(annotation: Any) -> tuple[type, ...]:
    """The types a field's annotation accepts (`str | int | None` -> (str, int))."""
    args = get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return tuple(get_origin(a) or a for a in args if a is not type(None))


def _checked(value: Any, kinds: tuple[type, ...], key: str, config: Config) -> Any:
    """`value` when it is one of `kinds` (an integer counts as a float, a bool as no number)."""
    numbers = (int, float) if float in kinds else ()
    ok = bool in kinds if isinstance(value, bool) else isinstance(value, kinds + numbers)
    if not ok:
        raise ConfigError(
            f"{config.where}: `{key}` must be {_type_words(kinds)}, got {value!r}",
            hint=f"Fix `{key}` in {config.where}.",
        )
    if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf
        raise ConfigError(
            f"{config.where}: `{key}` got {value}: allowed is a finite number",
            hint=f"Fix `{key}` in {config.where}.",
        )
    if float in kinds and int not in kinds and type(value) is int:
        return float(value)
    return value


def _type_words(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    names |= {dict: "a table", list: "a list"}
    if set(kinds) <= {int, float} and float in kinds:
        return "a number"
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_config(path: Path) -> Config:
    """Parse mllib.toml at `path`; a missing file is an empty config."""
    if not path.exists():
        return Config(None, {})
    if not path.is_file():
        raise ConfigError(
            f"{path} is not a file (a folder?)",
            hint="mllib.toml must be a TOML file; rename or remove what is there.",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
            hint="Save it as UTF-8 (TOML files are UTF-8).",
        ) from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="Fix the file and try again."
        ) from exc
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}",
            hint=f"Known keys: {', '.join(sorted(KNOWN_KEYS))}. See mllib.toml.example.",
        )
    config = Config(path, data)
    for table, cls in CORE_TABLES.items():
        read_table(cls, config, table)
    return config
