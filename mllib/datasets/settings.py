"""The `[data]` table of mllib.toml: transfer settings, and datasets handed to every run.

[data]
max_size_gb = 10          # settings are the names below, with number values
train = "mnist@3"         # anything else binds a dataset to a run: TRAIN_DATA=<path>
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from mllib.config import Config, read_table
from mllib.datasets.refs import DatasetRef, env_var_for, parse_ref
from mllib.errors import ConfigError, MllibError

PENDING_DAYS = 7  # an interrupted upload older than this may be cleaned away by `data rm`


@dataclass(frozen=True)
class DataSettings:
    """[data]'s settings (its other keys bind datasets to runs)."""

    max_size_gb: float = 10.0  # largest dataset version accepted, in GB (10^9 bytes)
    timeout_s: float = 30.0  # connect/read timeout of URL downloads
    retries: int = 4  # transient network failures in a row before a download gives up
    cache_dir: str | None = None  # where versions are materialised for runs (default .mllib/data)
    allow_private_urls: bool = False  # URL uploads may reach loopback and private addresses

    @property
    def max_size(self) -> int:
        return int(self.max_size_gb * 1e9)

    @classmethod
    def from_config(cls, config: Config) -> DataSettings:
        settings = read_table(cls, config, "data", more=True)
        if settings.max_size_gb <= 0 or settings.timeout_s <= 0 or settings.retries < 0:
            raise ConfigError(
                f"{config.where}: [data] max_size_gb and timeout_s must be positive, retries >= 0"
            )
        return settings


SETTINGS = tuple(f.name for f in fields(DataSettings))


def cache_dir(config: Config, state_dir: Path) -> Path:
    """Where materialised datasets live: `[data] cache_dir`, else .mllib/data."""
    value = DataSettings.from_config(config).cache_dir
    if not value:
        return state_dir / "data"
    path = Path(value).expanduser()
    return path if path.is_absolute() or config.path is None else config.path.parent / path


def config_bindings(config: Config) -> dict[str, DatasetRef]:
    """The datasets `[data]` hands to every run: env variable -> reference."""
    bindings: dict[str, DatasetRef] = {}
    for key, value in config.section("data").items():
        if key in SETTINGS:
            continue
        if not isinstance(value, str):
            raise ConfigError(
                f"{config.where}: [data] {key} = {value!r} is neither a setting nor a dataset",
                hint=f'Bind a dataset as {key} = "NAME[@VERSION]"; settings are '
                f"{', '.join(SETTINGS)}.",
            )
        try:
            bindings[env_var_for(key)] = parse_ref(value)
        except MllibError as exc:
            raise ConfigError(
                f"{config.where}: [data] {key}: {exc.message}", hint=exc.hint
            ) from None
    return bindings
