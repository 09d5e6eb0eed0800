"""A project's Python dependencies, read as pip reads them, and the host versions that pin them.

Dependencies come from ``requirements.txt`` (read by pip's own parser, pip-requirements-parser:
``-r`` includes, ``-c`` constraints, ``--hash`` options, index options, comments after tabs,
continuations, markers), ``[project] dependencies`` of the project's ``pyproject.toml`` and
``[runtime] packages`` of mllib.toml, plus what the worker itself imports. ``host_pins`` pins
every one of them, and everything they depend on, to the version installed where mllib runs
(never against what the user wrote), so a run in a venv or a container computes with the same
numpy, scikit-learn or torch as a run in a child process::

    reqs = project_requirements(project.root, project.config)
    pins = host_pins([r.text for r in reqs if r.is_package], declared=reqs)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mllib.config import Config
from mllib.protocol.failure import USER_ERROR
from mllib.runtime.engine import ImageBuildError
from mllib.runtime.host_settings import refuse_credentials
from mllib.userdirs import cache_dir

REQUIREMENTS_FILE = "requirements.txt"
# pip options of requirements.txt passed on to the installer: their long names, and whether
# their value is a location (which must be http(s): a build or another host cannot see a
# folder of this machine). -r and -c are followed here.
PASSED_OPTIONS = {
    "index_url": ("--index-url", True),
    "extra_index_urls": ("--extra-index-url", True),
    "find_links": ("--find-links", True),
    "no_index": ("--no-index", False),
    "trusted_hosts": ("--trusted-host", False),
    "pre": ("--pre", False),
    "prefer_binary": ("--prefer-binary", False),
    "only_binary": ("--only-binary", False),
    "no_binary": ("--no-binary", False),
    "require_hashes": ("--require-hashes", False),
}
FOLLOWED_OPTIONS = ("requirements", "constraints")
IGNORED_OPTIONS = ("use_features",)  # pip's own feature flags: nothing to install differently
# What the worker imports besides the standard library (sentry-sdk: when the model calls
# mllib.sentry_plugin.enable()); the versions come from mllib's metadata.
WORKER_PACKAGES = ("cloudpickle", "orjson", "sentry-sdk")
# What a model server imports besides the worker's (mllib.serving.server: LitServe, the uvicorn
# and httptools it plugs into, its metrics and process trees, and the registry it writes a key's
# burst flag to), for a server run in a venv.
SERVER_PACKAGES = (
    "litserve", "uvicorn", "httptools", "uvloop", "starlette", "fastapi", "pydantic",
    "prometheus-client", "psutil", "sqlite-utils",
)  # fmt: skip


@dataclass(frozen=True)
class Requirement:
    """One dependency (or pip option line) as the user wrote it, and where (for error messages).

    `hashes` are its `--hash` values (a locked file's); `constraint` marks a line of a `-c` file,
    which limits versions without asking for the package."""

    text: str
    origin: str
    hashes: tuple[str, ...] = ()
    constraint: bool = False

    @property
    def is_option(self) -> bool:
        """A pip option line of requirements.txt, such as --extra-index-url URL."""
        return self.text.startswith("-")

    @property
    def is_package(self) -> bool:
        """A package to install (not an option, not a constraint)."""
        return not self.is_option and not self.constraint

    @property
    def name(self) -> str:
        from packaging.requirements import Requirement as Parsed
        from packaging.utils import canonicalize_name

        return canonicalize_name(Parsed(self.text).name)

    @property
    def line(self) -> str:
        """The line an installer reads: the requirement with its hashes."""
        return " ".join([self.text, *(f"--hash={h}" for h in self.hashes)])

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "origin": self.origin,
            "hashes": list(self.hashes),
            "constraint": self.constraint,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Requirement:
        return cls(data["text"], data["origin"], tuple(data["hashes"]), data["constraint"])


def project_requirements(root: Path, config: Config) -> list[Requirement]:
    """The project's dependencies in file order, duplicates dropped; bad lines are user errors."""
    found: list[Requirement] = []
    if (root / REQUIREMENTS_FILE).is_file():
        found += read_requirements_file(root / REQUIREMENTS_FILE, root)
    found += _pyproject_dependencies(root / "pyproject.toml", root)
    packages = config.runtime.packages
    for index, text in enumerate(packages):
        if not isinstance(text, str):
            raise ImageBuildError(
                f"{config.where}: [runtime] packages[{index}] is {text!r}, not a string",
                hint='Write packages as strings, e.g. packages = ["scikit-learn>=1.3"].',
                failure_class=USER_ERROR,
            )
        found.append(_checked(text, f"{config.where} [runtime] packages"))
    unique: dict[tuple[str, bool], Requirement] = {}
    for req in found:
        unique.setdefault((_normal(req.text), req.constraint), req)
    return list(unique.values())


def read_requirements_file(path: Path, root: Path) -> list[Requirement]:
    """Every requirement, constraint and passed option of `path` and the files it includes, as
    pip reads them (pip's own parser); a line pip would refuse is a user error naming it.

    What a file said is kept in a cache checked against the content of every file it read, so
    an unchanged file is not parsed again (pip's parser takes a sixth of a second to import)."""
    path = path.resolve()
    folder = cache_dir()
    cache = folder / f"requirements-{_digest(str(path), str(root.resolve()))}.json"
    try:
        cached = json.loads(cache.read_text())
        if all(_file_digest(Path(f)) == sha for f, sha in cached["files"].items()):
            return [Requirement.from_json(r) for r in cached["requirements"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found, files = _parse_requirements_file(path, root)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        temporary = cache.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(
            json.dumps(
                {
                    "files": {f: _file_digest(Path(f)) for f in files},
                    "requirements": [r.to_json() for r in found],
                }
            )
        )
        temporary.replace(cache)
    return found


def _parse_requirements_file(path: Path, root: Path) -> tuple[list[Requirement], list[str]]:
    """The requirements of `path` (see read_requirements_file), and every file it read."""
    from pip_requirements_parser import InstallationError, RequirementsFile

    try:
        parsed = RequirementsFile.from_file(str(path), include_nested=True)
    except (InstallationError, OSError) as exc:
        message = str(exc).replace("|n", ": ").strip()
        raise ImageBuildError(
            f"{_where(path, root)}: {message}",
            hint="Fix the -r/-c line, or add the file it names.",
            failure_class=USER_ERROR,
        ) from None
    if parsed.invalid_lines:
        bad = parsed.invalid_lines[0]
        raise ImageBuildError(
            f"{_where(Path(bad.filename), root, bad.line_number)}: {bad.line.strip()!r} is not a "
            f"valid requirement: {bad.error_message}",
            hint="Write requirements as pip does, e.g. scikit-learn>=1.3 or torch==2.4.0.",
            failure_class=USER_ERROR,
        )
    found: list[Requirement] = []
    for req in parsed.requirements:
        where = _where(Path(req.filename), root, req.line_number)
        if req.is_editable or req.req is None:
            raise ImageBuildError(
                f"{where}: {req.line.strip()!r} installs a folder of this machine, which another "
                "environment cannot see",
                hint="Publish the package to an index you can reach, or vendor its code in the "
                "project.",
                failure_class=USER_ERROR,
            )
        text = _checked(_without_hashes(req.dumps()), where).text
        found.append(Requirement(text, where, tuple(req.hash_options), bool(req.is_constraint)))
    for option in parsed.options:
        where = _where(Path(option.filename), root, option.line_number)
        for key, value in option.options.items():
            if key not in FOLLOWED_OPTIONS and key not in IGNORED_OPTIONS:
                found.append(_checked_option(key, value, where))
    files = {str(path)}
    files.update(str(Path(r.filename).resolve()) for r in parsed.requirements)
    for option in parsed.options:
        folder = Path(option.filename).resolve().parent
        for key in FOLLOWED_OPTIONS:
            files.update(str((folder / name).resolve()) for name in option.options.get(key, []))
    return found, sorted(files)


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def worker_requirements(*, server: bool = False) -> list[Requirement]:
    """The worker's own dependencies (with `server`, a model server's too), with the version
    ranges mllib declares for them."""
    from packaging.requirements import Requirement as Parsed
    from packaging.utils import canonicalize_name

    declared = {}
    try:
        requires = metadata.requires("mllib") or []
    except metadata.PackageNotFoundError:  # mllib imported from a checkout, not installed
        requires = []
    for text in requires:
        parsed = Parsed(text)
        if parsed.marker is None:
            declared[canonicalize_name(parsed.name)] = text
    packages = (*WORKER_PACKAGES, *(SERVER_PACKAGES if server else ()))
    origin = "mllib's server" if server else "mllib's worker"
    return [Requirement(declared.get(name, name), origin) for name in packages]


def host_pins(
    requirements: Iterable[str], *, declared: Iterable[Requirement] = ()
) -> dict[str, str]:
    """Canonical name -> host version for `requirements` and their dependencies, where installed.

    A package is pinned only when the host has it, in a version every requirement and
    constraint of `declared` naming it allows (a locked version wins over the host's), from an
    index or a wheel (not an editable or local-folder install, which no index can provide).
    """
    from packaging.requirements import Requirement as Parsed
    from packaging.utils import canonicalize_name

    limits: dict[str, list[Any]] = {}
    for req in declared:
        if not req.is_option:
            parsed = Parsed(req.text)
            limits.setdefault(canonicalize_name(parsed.name), []).append(parsed.specifier)
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [Parsed(text) for text in requirements]
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen or req.url:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        version = dist.version
        allowed = [req.specifier, *limits.get(name, [])]
        if not all(s.contains(version, prereleases=True) for s in allowed):
            continue
        if _installed_locally(dist):
            continue
        pins[name] = version
        for text in dist.requires or []:
            dep = Parsed(text)
            wanted = [{"extra": extra} for extra in (*req.extras, "")]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in wanted):
                queue.append(dep)
    return dict(sorted(pins.items()))


def _installed_locally(dist: metadata.Distribution) -> bool:
    """True for editable, local-folder and VCS installs (PEP 610), which no index can provide."""
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    info = json.loads(text)
    return "dir_info" in info or "vcs_info" in info


def _where(path: Path, root: Path, number: int | None = None) -> str:
    path = Path(path)
    rel = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path
    return f"{rel.as_posix()}:{number}" if number else rel.as_posix()


def _without_hashes(line: str) -> str:
    """A requirement line as pip-requirements-parser dumps it, less its --hash options."""
    return re.sub(r"\s*\\?\s*--hash[=\s]\S+", "", line).strip().rstrip("\\").strip()


def _pyproject_dependencies(path: Path, root: Path) -> list[Requirement]:
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ImageBuildError(f"{path} is not valid TOML: {exc}", failure_class=USER_ERROR) from exc
    deps = data.get("project", {}).get("dependencies", [])
    where = f"{path.relative_to(root)} [project] dependencies"
    return [_checked(text, where) for text in deps if isinstance(text, str)]


def _checked(text: str, origin: str) -> Requirement:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Parsed

    text = text.strip()
    try:
        parsed = Parsed(text)
    except InvalidRequirement as exc:
        raise ImageBuildError(
            f"{origin}: {text!r} is not a valid requirement: {exc}",
            hint="Write requirements as pip does, e.g. scikit-learn>=1.3 or torch==2.4.0.",
            failure_class=USER_ERROR,
        ) from None
    if parsed.url and parsed.url.startswith("file:"):
        raise ImageBuildError(
            f"{origin}: {text!r} points at a file on this machine, which another environment "
            "cannot read",
            hint="Publish the package to an index you can reach, or vendor its code in the project.",
            failure_class=USER_ERROR,
        )
    return Requirement(text, origin)


def _checked_option(key: str, value: Any, where: str) -> Requirement:
    if key not in PASSED_OPTIONS:
        spelled = "--" + key.replace("_", "-")
        supported = ", ".join(sorted(flag for flag, _ in PASSED_OPTIONS.values()))
        raise ImageBuildError(
            f"{where}: the pip option {spelled!r} is not supported in project environments",
            hint=f"Supported: {supported} (and -r FILE, -c FILE).",
            failure_class=USER_ERROR,
        )
    flag, is_location = PASSED_OPTIONS[key]
    values = value if isinstance(value, list) else [value]
    if is_location:
        for url in values:
            if not str(url).startswith(("http://", "https://")):
                raise ImageBuildError(
                    f"{where}: {flag} {url} is not an http(s) location, so another environment "
                    "cannot reach it",
                    failure_class=USER_ERROR,
                )
            refuse_credentials(flag.lstrip("-"), str(url), failure_class=USER_ERROR)
    if value is True:
        return Requirement(flag, where)
    return Requirement(" ".join(f"{flag} {item}" for item in values), where)


def _normal(text: str) -> str:
    return "".join(text.lower().split()).replace("_", "-")
