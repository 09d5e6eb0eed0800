"""The submitting machine's Python minor version in a project's image, where this host has it.

The base image holds Debian bookworm's Python (3.11). A run submitted from another minor version
(a laptop on 3.12) would compute, and pickle its model, under 3.11: a cloudpickled model is not
portable across minor versions. When this host has a Python of the submitter's minor version
whose installation is self-contained (a folder of its own that holds its standard library and
its libpython: uv's python-build-standalone builds, pyenv's builds; not a distribution's
/usr/bin/python3.12, which depends on the distribution's packages), it is copied into an image
derived from the base, at the same path, and the project's venv is made with it::

    {repository}-python:3.12.1-HASH   FROM the base image, with /root/.pyenv/versions/3.12.1

HASH covers the base image's id and the Python (its version and folder), so it is built once.
Otherwise the image keeps the base's Python and the build says so clearly (the note of
mllib.runtime.install_errors.python_mismatch). Only the standard library goes in: its tests,
static libraries, bytecode, the GUI modules and the folder's own site-packages stay out.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.runtime.image_build import build_image
from mllib.runtime.install_errors import python_mismatch

if TYPE_CHECKING:
    from docker import DockerClient

RECIPE = "1"  # bump when the image below changes
# Prefixes whose Python belongs to the distribution, not to a folder of its own.
SYSTEM_PREFIXES = ("/", "/usr", "/usr/local")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImagePython:
    """A Python of this host to copy into the image: its version, folder and executable."""

    version: str
    prefix: str
    executable: str  # inside `prefix`: the same path in the image
    tag: str  # the derived image's tag

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def choose_python(
    base: str, base_id: str, base_python: str, wanted: str, repository: str
) -> tuple[ImagePython | None, str | None]:
    """(the Python to copy into an image derived from `base`, or None; a note when the image
    keeps a Python of another minor version than `wanted`, the submitter's)."""
    note = python_mismatch(base_python, wanted, where=f"the base image {base}")
    if note is None:
        return None, None
    from mllib.runtime.venvs import find_interpreter

    found = find_interpreter(wanted)
    if found.note is not None:  # this host has no Python of that minor version
        return None, note
    probe = _portable(found.path)
    if probe is None:
        why = f"its Python {found.version} ({found.path}) is not a self-contained installation"
        return None, f"{note} ({why})"
    prefix, executable = probe
    digest = hashlib.sha256(
        json.dumps([RECIPE, base_id, found.version, prefix, executable]).encode()
    ).hexdigest()
    tag = f"{repository}-python:{found.version}-{digest[:12]}"
    return ImagePython(found.version, prefix, executable, tag), None


def ensure_python_image(
    client: DockerClient, base: str, python: ImagePython, say: Progress
) -> None:
    """Build the image of `python` FROM `base` when the engine does not have it yet."""
    from mllib.runtime.engine import image_id

    if image_id(client, python.tag):
        return
    say(
        f"mllib: building {python.tag}: Python {python.version} from this host ({python.prefix}) "
        f"in {base}, the submitting machine's minor version (once)"
    )
    dockerfile = [f"FROM {base}", "ADD python.tar /"]
    files = {
        "python.tar": _python_tar(Path(python.prefix), python.minor),
        "Dockerfile": ("\n".join(dockerfile) + "\n").encode(),
    }
    labels = {"org.mllib.python": python.version, "org.mllib.python.prefix": python.prefix}
    build_image(client, python.tag, files, labels=labels, progress=say)


def _portable(python: str) -> tuple[str, str] | None:
    """(prefix, executable) of `python` when its installation is a folder of its own that holds
    its standard library and (a shared build) its libpython; None otherwise."""
    script = (
        "import json, sys, sysconfig; print(json.dumps([sys.base_prefix, sys.executable, "
        "sysconfig.get_config_var('LIBDIR') or '', sysconfig.get_config_var('Py_ENABLE_SHARED'),"
        " sysconfig.get_paths()['stdlib']]))"
    )
    try:
        found = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=30)
        prefix, executable, libdir, shared, stdlib = json.loads(found.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    root = Path(prefix).resolve()
    inside = [Path(executable).resolve(), Path(stdlib).resolve()]
    if shared:
        inside.append(Path(libdir).resolve())
    if str(root) in SYSTEM_PREFIXES or not all(p.is_relative_to(root) for p in inside):
        return None
    return str(root), str(Path(executable).resolve())


def _python_tar(prefix: Path, minor: str) -> bytes:
    """A tar of `prefix` at its own path (links and modes kept), less what no run needs."""
    stdlib = f"lib/python{minor}"
    skipped = {f"{stdlib}/test", f"{stdlib}/site-packages", f"{stdlib}/idlelib",
               f"{stdlib}/turtledemo", f"{stdlib}/tkinter"}  # fmt: skip

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = Path(info.name).relative_to(prefix.relative_to("/")).as_posix()
        parts = rel.split("/")
        if "__pycache__" in parts or rel.endswith(".a"):
            return None
        if any(rel == s or rel.startswith(f"{s}/") for s in skipped):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(prefix, arcname=prefix.relative_to("/").as_posix(), filter=keep)
    return buffer.getvalue()
