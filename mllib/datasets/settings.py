"""The `[data]` table of mllib.toml: transfer settings, and datasets handed to every run.

[data]
max_size_gb = 10          # settings are the names below, with number values
train = "mnist@3"         # anything else binds a dataset to a run: TRAIN_DATA=<path>
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mllib.config import Config
from mllib.datasets.refs import DatasetRef, env_var_for, parse_ref
from mllib.errors import ConfigError, MllibError

SETTINGS = {
    "max_size_gb": 10.0,  # largest dataset version accepted, in GB (10^9 bytes)
    "timeout_s": 30.0,  # connect/read timeout of URL downloads
    "retries": 4,  # transient network failures in a row before a download gives up
}
CACHE_KEY = "cache_dir"  # where versions are materialised for runs (default .mllib/data)
PENDING_DAYS = 7  # an interrupted upload older than this may be cleaned away by `data rm`


@dataclass(frozen=True)
class DataSettings:
    max_size: int = int(SETTINGS["max_size_gb"] * 1e9)
    timeout_s: float = SETTINGS["timeout_s"]
    retries: int = int(SETTINGS["retries"])

    @classmethod
    def from_config(cls, config: Config) -> DataSettings:
        max_gb = config.get("data.max_size_gb", SETTINGS["max_size_gb"], float)
        timeout = config.get("data.timeout_s", SETTINGS["timeout_s"], float)
        retries = config.get("data.retries", SETTINGS["retries"], int)
        if max_gb <= 0 or timeout <= 0 or retries < 0:
            raise ConfigError(
                f"{config.where}: [data] max_size_gb and timeout_s must be positive, retries >= 0"
            )
        return cls(int(max_gb * 1e9), float(timeout), retries)


def cache_dir(config: Config, state_dir: Path) -> Path:
    """Where materialised datasets live: `[data] cache_dir`, else .mllib/data."""
    value = config.get(f"data.{CACHE_KEY}", None, str)
    if not value:
        return state_dir / "data"
    path = Path(value).expanduser()
    return path if path.is_absolute() or config.path is None else config.path.parent / path


def config_bindings(config: Config) -> dict[str, DatasetRef]:
    """The datasets `[data]` hands to every run: env variable -> reference."""
    bindings: dict[str, DatasetRef] = {}
    for key, value in config.section("data").items():
        if key in SETTINGS or key == CACHE_KEY:
            continue
        if not isinstance(value, str):
            raise ConfigError(
                f"{config.where}: [data] {key} = {value!r} is neither a setting nor a dataset",
                hint=f'Bind a dataset as {key} = "NAME[@VERSION]"; settings are '
                f"{', '.join(SETTINGS)} and {CACHE_KEY}.",
            )
        try:
            bindings[env_var_for(key)] = parse_ref(value)
        except MllibError as exc:
            raise ConfigError(
                f"{config.where}: [data] {key}: {exc.message}", hint=exc.hint
            ) from None
    return bindings
