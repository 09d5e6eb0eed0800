"""A project: the folder holding mllib.toml (or the model file), its config, env files and state paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
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
            if (folder / CONFIG_FILE).exists():  # a folder or unreadable file is an error there
                return cls(folder, load_config(folder / CONFIG_FILE))
        return cls(here, Config())

    def _path_setting(self, env_var: str, configured: str | None, default: Path) -> Path:
        value = os.environ.get(env_var) or configured
        if not value:
            return default
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def secure_state(self) -> None:
        """Make .mllib/ 0700 and a registry inside it 0600 (creating the folder, tightening what
        an older mllib or the umask left open), when the registry or the store lives there. A
        registry elsewhere (`[registry] path`) keeps the mode it was given."""
        from mllib.filemodes import private_dir, private_file

        state = self.state_dir
        inside = [p for p in (self.registry_path, self.store_path) if p.is_relative_to(state)]
        if not inside:
            return
        private_dir(state)
        if self.registry_path.is_relative_to(state):
            for suffix in ("", "-wal", "-shm"):
                path = self.registry_path.with_name(self.registry_path.name + suffix)
                if path.exists():
                    private_file(path)

    @property
    def registry_path(self) -> Path:
        """`MLLIB_REGISTRY`, else `[registry] path`, else .mllib/registry.db."""
        return self._path_setting(
            "MLLIB_REGISTRY", self.config.registry.path, self.state_dir / "registry.db"
        )

    @property
    def store_path(self) -> Path:
        """`MLLIB_STORE`, else `[store] path`, else .mllib/store."""
        return self._path_setting("MLLIB_STORE", self.config.store.path, self.state_dir / "store")

    @property
    def runs_dir(self) -> Path:
        """Per-run folders (spec, events, logs) sit beside the registry."""
        return self.registry_path.parent / "runs"

    def env_file(self, target: str) -> Path:
        return self.root / ENV_FILES[target]

    def env_values(self, target: str) -> dict[str, str]:
        """The variables of .env.local or .env.remote; {} when the file is absent."""
        return read_env_file(self.env_file(target))

    def env_under_shell(self, target: str) -> dict[str, str]:
        """The env file's variables, each overridden by the real environment where it is set:
        what runs, `mllib serve` and deployments see (the shell beats the env file)."""
        return {key: os.environ.get(key, value) for key, value in self.env_values(target).items()}


def read_env_file(path: Path) -> dict[str, str]:
    """An env file's variables, each value taken as written: dotenv format (quotes and, inside
    double quotes, backslash escapes), but no `${VAR}` interpolation, so a secret holding `$`
    arrives intact. {} when the file is absent."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, interpolate=False)
    except Exception as exc:  # dotenv raises plain errors on unreadable files
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    return {k: v for k, v in values.items() if v is not None}


def format_env_file(values: Mapping[str, str]) -> str:
    """Env file text that `read_env_file` reads back exactly (any quotes, `$`, backslashes and
    newlines; a carriage return as `\\r`, which reading would turn into a newline), for env files
    mllib writes itself."""
    lines = []
    for key, value in values.items():
        quoted = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
        lines.append(f'{key}="{quoted}"\n')
    return "".join(lines)
