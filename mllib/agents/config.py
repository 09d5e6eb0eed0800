"""Which agents exist: `mllib agents add` writes agents.json in the user's config folder
(mllib.userdirs: ~/.config/mllib, or $MLLIB_HOME/config, beside known_hosts); mllib.toml may
declare more.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mllib.config import Config
from mllib.errors import ConfigError, NotFoundError, UsageError
from mllib.userdirs import config_file

AGENTS_FILE = "agents.json"
AGENTS_LOCK = "agents.lock"
DEFAULT_CACHE_GB = 50.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# The shapes of the fields that reach the agent host (its login, paths and commands there):
# no spaces, quotes or shell metacharacters, whatever quoting the commands get.
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")  # a name, an IPv4 or IPv6 address
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
COMMAND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")  # a program name looked up on PATH
ABS_PATH_RE = re.compile(r"^/[A-Za-z0-9_.+@/-]*$")


@dataclass(frozen=True)
class AgentSpec:
    """How to reach one agent host and what it offers.

    >>> AgentSpec("gpu1", host="10.0.0.5", user="ml", gpus=2)  # doctest: +SKIP
    """

    name: str
    host: str
    port: int = 22
    user: str | None = None  # default: the local user name
    key: str | None = None  # a private key file; default: ssh-agent and ~/.ssh/id_*
    gpus: int | None = None  # None: count them with nvidia-smi on the host
    python: str = "python3"  # the host's interpreter that builds the agent's venv
    root: str | None = None  # where the agent lives on the host; default ~/.mllib-agent
    cache_gb: float | None = None  # the agent's blob cache cap (GB); default DEFAULT_CACHE_GB
    source: str = "agents.json"  # or the mllib.toml that declared it

    def __post_init__(self) -> None:
        check_spec_fields(self)

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def gpu_count(self, detected_gpus: int | None) -> int:
        """The GPUs its runs share out, one each: the configured count, else those detected."""
        return (self.gpus if self.gpus is not None else detected_gpus) or 0

    def slots(self, detected_gpus: int | None) -> int:
        """Runs the agent takes at once: its GPUs (configured, else detected), at least one."""
        return max(1, self.gpu_count(detected_gpus))

    @property
    def cache_bytes(self) -> int:
        """The size the agent keeps its store (code, models, dataset chunks) within."""
        return int((self.cache_gb if self.cache_gb is not None else DEFAULT_CACHE_GB) * 1e9)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return {k: v for k, v in data.items() if v is not None}


def detected_gpus(info: dict[str, Any]) -> int | None:
    """The GPUs nvidia-smi lists on an agent (its `info` answer); None without nvidia-smi."""
    return len(info["gpus"]) if info["gpus"] is not None else None


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"Invalid agent name {name!r}",
            hint="Use letters, digits, '-', '_' and '.', starting with a letter or digit.",
        )
    return name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(spec: AgentSpec, key: str) -> str | None:
    """What is wrong with one field of `spec`, or None."""
    value = getattr(spec, key)
    if key in ("name", "host", "python"):
        if not isinstance(value, str) or not value:
            return "must be a non-empty string"
    elif value is None or key == "source":
        return None
    if key == "name" and not NAME_RE.match(value):
        return "may hold only letters, digits, '-', '_' and '.', starting with a letter or digit"
    if key == "host" and not HOST_RE.match(value):
        return "must be a host name or an IP address"
    if key == "port" and not (_is_int(value) and 1 <= value <= 65535):
        return "must be an integer from 1 to 65535"
    if key == "gpus" and not (_is_int(value) and value >= 0):
        return "must be an integer >= 0"
    if key == "cache_gb" and not (
        isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    ):
        return "must be a number >= 0"
    if key == "user" and not (isinstance(value, str) and USER_RE.match(value)):
        return "must be a user name (letters, digits, '_', '.', '-')"
    if key == "key" and not (isinstance(value, str) and value):
        return "must be the path of a private key file"
    if key == "python" and not (COMMAND_RE.match(value) or ABS_PATH_RE.match(value)):
        return "must be a program name on the host's PATH (python3) or an absolute path"
    if key == "root" and not (isinstance(value, str) and ABS_PATH_RE.match(value)):
        return "must be an absolute path on the host (letters, digits, '/', '_', '.', '-')"
    return None


def check_spec_fields(spec: AgentSpec) -> None:
    """Refuse an agent whose fields have the wrong type or shape (a number for `python`, a
    command line in `root`): they reach the host's login and the commands run there."""
    for item in fields(AgentSpec):
        problem = _field_problem(spec, item.name)
        if problem:
            value = getattr(spec, item.name)
            who = f"agent {spec.name!r}" if isinstance(spec.name, str) else "an agent"
            raise UsageError(
                f"Invalid `{item.name}` {value!r} for {who}: it {problem}",
                hint=f"Give `{item.name}` a valid value (--{item.name.replace('_', '-')} of "
                "`mllib agents add`, or the key in agents.json or [[agents]] of mllib.toml).",
            )


def _spec_from(data: dict[str, Any], source: str) -> AgentSpec:
    known = {f.name for f in fields(AgentSpec)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown agent key(s) {', '.join(unknown)}",
            hint=f"Agent keys: {', '.join(sorted(known))}.",
        )
    for key in ("name", "host"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{source}: every agent needs a `{key}` string")
    try:
        return AgentSpec(**{k: v for k, v in data.items() if k in known}, source=source)
    except UsageError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from None


def _file() -> Path:
    return config_file(AGENTS_FILE)


def _read_file() -> list[AgentSpec]:
    path = _file()
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())["agents"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid agents file: {exc}") from exc
    return [_spec_from(row, str(path)) for row in rows]


def _write_file(specs: list[AgentSpec]) -> None:
    """Replace agents.json whole (0600); only under `_changing()`."""
    from mllib.filemodes import write_private

    text = json.dumps({"agents": [s.to_json() for s in specs]}, indent=2)
    write_private(_file(), text + "\n")


@contextlib.contextmanager
def _changing() -> Iterator[None]:
    """Hold agents.lock while agents.json is read, changed and written back: two `mllib agents
    add` at once both keep their agent."""
    from mllib.filemodes import private_dir
    from mllib.locks import file_lock

    path = _file()
    private_dir(path.parent)
    with file_lock(path.with_name(AGENTS_LOCK), what="the agents list"):
        yield


def load_agents(config: Config | None = None) -> list[AgentSpec]:
    """Agents from agents.json, then those of mllib.toml `[[agents]]` (which add to them; one
    of the same name must reach the same place, see `_refuse_redirect`)."""
    users = {s.name: s for s in _read_file()}
    by_name = dict(users)
    if config is not None:
        declared = config.get("agents", [], list)
        for row in declared:
            if not isinstance(row, dict):
                raise ConfigError(f"{config.where}: `agents` must be an array of tables [[agents]]")
            spec = _spec_from(dict(row), config.where)
            _refuse_redirect(users.get(spec.name), spec)
            by_name[spec.name] = spec
    return list(by_name.values())


_WHERE_FIELDS = ("host", "port", "user", "root")


def _refuse_redirect(user_spec: AgentSpec | None, project_spec: AgentSpec) -> None:
    """A project (a cloned repository) may not point one of the user's agents elsewhere: the
    user's key and `.env.remote` secrets would go to another host, login or folder."""
    if user_spec is None or all(
        getattr(user_spec, f) == getattr(project_spec, f) for f in _WHERE_FIELDS
    ):
        return

    def shown(spec: AgentSpec) -> str:
        return ", ".join(f"{f}={getattr(spec, f)!r}" for f in _WHERE_FIELDS)

    name = project_spec.name
    raise ConfigError(
        f"{project_spec.source} declares agent {name!r} ({shown(project_spec)}), but your "
        f"agent {name!r} in {user_spec.source} is {shown(user_spec)}: mllib will not send your "
        "key and secrets to a place a project names",
        hint=f"Rename one: the [[agents]] entry in {project_spec.source}, or yours with "
        f"`mllib agents rm {name}` and `mllib agents add NEW_NAME ...`.",
    )


def get_agent(name: str, config: Config | None = None) -> AgentSpec:
    for spec in load_agents(config):
        if spec.name == name:
            return spec
    raise NotFoundError(f"No agent named {name!r}", hint="List agents with `mllib agents list`.")


def save_agent(spec: AgentSpec) -> None:
    """Add or replace `spec` in agents.json."""
    with _changing():
        specs = [s for s in _read_file() if s.name != spec.name]
        _write_file([*specs, spec])


def delete_agent(name: str) -> bool:
    """Remove agent `name` from agents.json; False if it was not there."""
    with _changing():
        specs = _read_file()
        kept = [s for s in specs if s.name != name]
        if len(kept) == len(specs):
            return False
        _write_file(kept)
        return True
