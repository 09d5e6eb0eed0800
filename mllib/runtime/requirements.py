"""A project's Python dependencies for its image, and the host versions that pin them.

Dependencies come from ``requirements.txt`` (``-r`` includes followed), ``[project]
dependencies`` of the project's ``pyproject.toml`` and ``[runtime] packages`` of mllib.toml,
plus what the worker itself imports. ``host_pins`` pins every one of them, and everything they
depend on, to the version installed where mllib runs, so a run in a container computes with
the same numpy, scikit-learn or torch as a run in a child process::

    reqs = project_requirements(project.root, project.config)
    pins = host_pins([r.text for r in reqs])  # {"numpy": "2.4.6", "scikit-learn": "1.9.1", ...}
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mllib.config import Config
from mllib.protocol.failure import USER_ERROR
from mllib.runtime.engine import ImageBuildError
from mllib.runtime.host_settings import refuse_credentials

REQUIREMENTS_FILE = "requirements.txt"
# pip options of requirements.txt that mean the same inside an image build (URLs must be http(s)).
PASSED_OPTIONS = {
    "-i": True,
    "--index-url": True,
    "--extra-index-url": True,
    "-f": True,
    "--find-links": True,
    "--trusted-host": False,
    "--pre": False,
    "--prefer-binary": False,
    "--only-binary": False,
    "--no-binary": False,
}
# What the worker imports besides the standard library (sentry-sdk: when the model calls
# mllib.sentry_plugin.enable()); the versions come from mllib's metadata.
WORKER_PACKAGES = ("cloudpickle", "orjson", "sentry-sdk")


@dataclass(frozen=True)
class Requirement:
    """One dependency as the user wrote it, and where (for error messages)."""

    text: str
    origin: str

    @property
    def is_option(self) -> bool:
        """A pip option line of requirements.txt, such as --extra-index-url URL."""
        return self.text.startswith("-")

    @property
    def name(self) -> str:
        from packaging.requirements import Requirement as Parsed
        from packaging.utils import canonicalize_name

        return canonicalize_name(Parsed(self.text).name)


def project_requirements(root: Path, config: Config) -> list[Requirement]:
    """The project's dependencies in file order, duplicates dropped; bad lines are user errors."""
    found: list[Requirement] = []
    if (root / REQUIREMENTS_FILE).is_file():
        found += _requirements_file(root / REQUIREMENTS_FILE, root, seen=set())
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
    unique: dict[str, Requirement] = {}
    for req in found:
        unique.setdefault(_normal(req.text), req)
    return list(unique.values())


def worker_requirements() -> list[Requirement]:
    """The worker's own dependencies, with the version ranges mllib declares for them."""
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
    return [Requirement(declared.get(name, name), "mllib's worker") for name in WORKER_PACKAGES]


def host_pins(requirements: Iterable[str]) -> dict[str, str]:
    """Canonical name -> host version for `requirements` and their dependencies, where installed.

    A package is pinned only when the host has it, in a version the requirement allows, from an
    index or a wheel (not an editable or local-folder install, which an image cannot install).
    """
    from packaging.requirements import Requirement as Parsed
    from packaging.utils import canonicalize_name

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
        if not req.specifier.contains(version, prereleases=True) or _installed_locally(dist):
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


def _requirements_file(path: Path, root: Path, seen: set[Path]) -> list[Requirement]:
    if path.resolve() in seen:
        return []
    seen.add(path.resolve())
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    found: list[Requirement] = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8")):
        where = f"{rel}:{number}"
        option = line.split("=", 1)[0].split(None, 1)[0]
        if option in ("-r", "--requirement") or line.startswith("-r"):
            target = re.sub(r"^(-r|--requirement)[=\s]*", "", line)
            included = path.parent / target
            if not included.is_file():
                raise ImageBuildError(
                    f"{where}: {line!r} includes {target}, which does not exist",
                    failure_class=USER_ERROR,
                )
            found += _requirements_file(included, root, seen)
        elif line.startswith("-"):
            found.append(_checked_option(line, option, where))
        else:
            found.append(_checked(line, where))
    return found


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, text) of requirement lines: comments stripped, continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line


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
            f"{origin}: {text!r} points at a file on this machine, which an image build cannot read",
            hint="Publish the package to an index you can reach, or vendor its code in the project.",
            failure_class=USER_ERROR,
        )
    return Requirement(text, origin)


def _checked_option(line: str, option: str, where: str) -> Requirement:
    if option not in PASSED_OPTIONS:
        raise ImageBuildError(
            f"{where}: the pip option {option!r} is not supported in image builds",
            hint=f"Supported: {', '.join(sorted(PASSED_OPTIONS))} (and -r FILE).",
            failure_class=USER_ERROR,
        )
    if PASSED_OPTIONS[option]:
        url = re.split(r"[=\s]", line, maxsplit=1)[-1].strip()
        if not url.startswith(("http://", "https://")):
            raise ImageBuildError(
                f"{where}: {option} {url} is not an http(s) location, so a build cannot reach it",
                failure_class=USER_ERROR,
            )
        refuse_credentials(option.lstrip("-"), url, failure_class=USER_ERROR)
    return Requirement(line, where)


def _normal(text: str) -> str:
    return "".join(text.lower().split()).replace("_", "-")
