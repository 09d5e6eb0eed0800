"""A project: the folder holding mllib.toml (or the model file), its config, env files and state paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mllib.config import CONFIG_FILE, Config, load_config
from mllib.errors import ConfigError

STATE_DIR = ".mllib"
ENV_FILES = {"local": ".env.local", "remote": ".env.remote"}


@dataclass(frozen=True)
class Project:
    """Where a model lives and where its runs are recorded."""

    root: Path
    config: Config

    @classmethod
    def find(cls, start: Path | str | None = None) -> Project:
        """The nearest folder at or above `start` (a file or folder) holding mllib.toml; else `start`'s folder."""
        start_path = Path(start or os.getcwd()).resolve()
        here = start_path if start_path.is_dir() else start_path.parent
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                return cls(folder, load_config(folder / CONFIG_FILE))
        return cls(here, Config())

    def _path_setting(self, env_var: str, key: str, default: Path) -> Path:
        value = os.environ.get(env_var) or self.config.get(key, None, str)
        if not value:
            return default
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def registry_path(self) -> Path:
        """`MLLIB_REGISTRY`, else `[registry] path`, else .mllib/registry.db."""
        return self._path_setting("MLLIB_REGISTRY", "registry.path", self.state_dir / "registry.db")

    @property
    def store_path(self) -> Path:
        """`MLLIB_STORE`, else `[store] path`, else .mllib/store."""
        return self._path_setting("MLLIB_STORE", "store.path", self.state_dir / "store")

    @property
    def runs_dir(self) -> Path:
        """Per-run folders (spec, events, logs) sit beside the registry."""
        return self.registry_path.parent / "runs"

    def env_file(self, target: str) -> Path:
        return self.root / ENV_FILES[target]

    def env_values(self, target: str) -> dict[str, str]:
        """The variables of .env.local or .env.remote (dotenv format); {} when the file is absent."""
        path = self.env_file(target)
        if not path.is_file():
            return {}
        from dotenv import dotenv_values

        try:
            values = dotenv_values(path)
        except Exception as exc:  # dotenv raises plain errors on unreadable files
            raise ConfigError(f"Cannot read {path}: {exc}") from exc
        return {k: v for k, v in values.items() if v is not None}
