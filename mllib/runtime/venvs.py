"""Project environments without Docker: venvs built from a run's environment plan, cached by
content and bounded in size.

A venv is keyed by a hash of (its Python's version and implementation, the platform, the
installer's files: requirements, hashes, constraints, pins), so runs whose dependencies are the
same share one, and a second run starts with no install at all. The cache lives in
`envs/` in the user's cache folder (mllib.userdirs: ~/.cache/mllib/envs, or $MLLIB_HOME/cache/envs;
on an agent, its own `envs/`; `MLLIB_ENV_CACHE` moves it):

    <key>/            the venv (bin/python ...) and mllib-env.json, written last (complete)
    <key>/pycache/    bytecode, written as runs import modules (none is compiled at install)
    <key>.lock        held exclusively while it is built, shared while a run uses it
    mllib/<hash>/mllib  a link to the running mllib, put on the worker's PYTHONPATH
    packages/<hash>.json  what an environment has installed, as its runs' workers read it
                        (mllib.worker.package_cache)

Least recently used venvs (the mtime of mllib-env.json) are removed first when the cache is
over its cap, never one a run holds. The venv's Python is the submitting machine's minor
version where this host has it, else this host's own, said clearly (a model pickled under one
minor version may not load under another).

>>> env = ensure_env(plan, progress=print)  # doctest: +SKIP
>>> env.python, env.key, env.built  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mllib import userdirs
from mllib.locks import FileLock
from mllib.runtime.env_plan import EnvPlan
from mllib.runtime.install_errors import python_mismatch

RECIPE = "1"  # bump when the layout of a built venv changes
META_FILE = "mllib-env.json"
KEY = re.compile(r"[0-9a-f]{24}")  # how venvs are named (env_key)
DEFAULT_CACHE_GB = 20.0
PYCACHE = "pycache"  # the bytecode of what runs in the venv imports (see mllib.runtime.venv)
Progress = Callable[[str], None]


def cache_dir() -> Path:
    """Where venvs are kept: MLLIB_ENV_CACHE, else envs/ in the user's cache folder."""
    return userdirs.env_cache_dir()


def cap_bytes(cache_gb: float) -> int:
    """The cache's size limit: MLLIB_ENV_CACHE_BYTES, else `cache_gb` ([runtime] env_cache_gb)."""
    cap = os.environ.get("MLLIB_ENV_CACHE_BYTES")
    return int(cap) if cap else int(cache_gb * 1e9)


@dataclass(frozen=True)
class Interpreter:
    """The Python a venv is made with, and a note when it is not the submitter's minor version."""

    path: str
    version: str
    implementation: str
    note: str | None = None


@dataclass
class Env:
    """A ready venv: its folder, its python, its key, and whether this call built it."""

    path: Path
    key: str
    python: str
    built: bool
    meta: dict[str, object]
    lock: FileLock | None = None  # a shared lock on the venv, held while a run uses it

    def variables(self) -> dict[str, str]:
        """The environment a process run with this venv's python gets: mllib itself (and
        nothing else of this host) on its path, and its bytecode written into the venv's own
        folder, once, for every later process, even where PYTHONDONTWRITEBYTECODE is set (it
        keeps __pycache__ out of the project, as that setting asks). Compiling every file at
        install took longer than the install itself, for modules no model imports."""
        return {
            "PYTHONPATH": str(mllib_path()),
            "VIRTUAL_ENV": str(self.path),
            "PATH": os.pathsep.join([str(self.path / "bin"), os.environ.get("PATH", "")]),
            "PYTHONPYCACHEPREFIX": str(self.path / PYCACHE),
            "PYTHONDONTWRITEBYTECODE": "",
        }

    @property
    def lock_path(self) -> Path:
        """The venv's lock file: a process holding it shared keeps the venv from being removed."""
        return lock_file(self.path.parent, self.key)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # a worker given the lock keeps it until it ends
            self.lock = None


def find_interpreter(wanted: str) -> Interpreter:
    """A Python of this host with `wanted`'s minor version ("3.11.7" -> any 3.11), else the one
    running mllib, with a note saying so. Installed Pythons only, never a download: those uv
    finds (its own, and on PATH), `pythonX.Y` on PATH, and pyenv's versions (which uv does not
    look in, and whose shims answer only for the versions a shell has selected)."""
    running = Interpreter(  # its own version (platform's answer stands for the submitter's)
        getattr(sys, "_base_executable", None) or sys.executable,
        ".".join(map(str, sys.version_info[:3])),
        platform.python_implementation(),
    )
    minor = ".".join(wanted.split(".")[:2])
    if not wanted or running.version.split(".")[:2] == minor.split("."):
        return running
    for candidate in (_uv_python(minor), shutil.which(f"python{minor}"), *_pyenv_pythons(minor)):
        if candidate:
            probe = _probe(candidate)
            if probe and probe.version.split(".")[:2] == minor.split("."):
                return probe
    note = python_mismatch(running.version, wanted, where="this host")
    return Interpreter(running.path, running.version, running.implementation, note)


def env_key(plan: EnvPlan, interpreter: Interpreter) -> str:
    """The content hash that names a venv (see the module docstring)."""
    parts = {
        "recipe": RECIPE,
        "python": [interpreter.implementation, interpreter.version],
        "platform": sysconfig.get_platform(),
        "files": plan.digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def ensure_env(
    plan: EnvPlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    cap_bytes: int | None = None,
) -> Env:
    """The venv for `plan`, built first when the cache lacks it (once, however many runs ask at
    the same time), and held (shared) until `Env.release()`. Raises InstallFailed or
    InstallCancelled (mllib.runtime.installer) when the build fails or is cancelled; a venv
    left half-built by a killed build is built again."""
    say = progress or (lambda _line: None)
    interpreter = find_interpreter(plan.python)
    if interpreter.note:
        say(f"mllib: note: {interpreter.note}")
    key = env_key(plan, interpreter)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / key
    lock = FileLock(lock_file(root, key), what=f"the environment {key}", record_pid=False)
    try:
        built = False
        if not _complete(path):
            if not lock.acquire(0):  # another run builds it: wait for its build, not its run
                say(f"mllib: another run is building the environment {key}; waiting for it")
                lock.acquire(None, shared=True)  # granted once that build is over
            if not _complete(path):  # nobody built it (or that build failed): build it here
                lock.acquire(None, shared=False)
                if not _complete(path):
                    _build(plan, interpreter, path, say, cancel)
                    built = True
        lock.acquire(None, shared=True)  # held for the run (a build or removal needs it alone)
        meta = json.loads((path / META_FILE).read_text())
        os.utime(path / META_FILE)  # just used: evicted last
    except BaseException:
        lock.release()
        raise
    env = Env(path, key, str(path / "bin" / "python"), built, meta, lock)
    if built and cap_bytes is not None:
        trim(cap_bytes, keep={key})
    return env


def _build(
    plan: EnvPlan,
    interpreter: Interpreter,
    path: Path,
    say: Progress,
    cancel: threading.Event | None,
) -> None:
    from mllib.runtime.installer import choose_installer, run_installer

    installer = choose_installer()
    start = time.monotonic()
    names = ", ".join(plan.names()) or "no packages"
    say(
        f"mllib: building the environment {path.name} with {installer.name} (Python "
        f"{interpreter.version}; {names}, pinned to the submitting machine's versions; once per "
        "set of dependencies)"
    )
    shutil.rmtree(path, ignore_errors=True)  # what a killed build left
    try:
        run_installer(
            installer.create(interpreter.path, path),
            environ=installer.environ,
            progress=say,
            cancel=cancel,
        )
        files = path / ".mllib-install"
        files.mkdir()
        for name, text in plan.files().items():
            (files / name).write_text(text)
        python = str(path / "bin" / "python")
        for step in plan.install_steps():
            constraints = files / step.constraints if step.constraints else None
            command, environ = installer.install(
                python,
                files / step.requirements,
                constraints,
                require_hashes=step.require_hashes,
                file_options=[r.text for r in plan.options],
            )
            run_installer(command, environ=environ, progress=say, cancel=cancel)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    seconds = time.monotonic() - start
    meta = {
        "key": path.name,
        "python": interpreter.version,
        "implementation": interpreter.implementation,
        "python_note": interpreter.note,
        "installer": installer.name,
        "step": plan.step,
        "packages": plan.names(),
        "seconds": round(seconds, 2),
        "size": _size(path),
        "created": time.time(),
    }
    temporary = path / f"{META_FILE}.tmp"
    temporary.write_text(json.dumps(meta, indent=1) + "\n")
    temporary.replace(path / META_FILE)  # complete from here on
    say(f"mllib: environment {path.name} is ready ({seconds:.1f} s, {installer.name})")


def mllib_path() -> Path:
    """A folder holding only a link to the running mllib package, for the worker's PYTHONPATH:
    the venv needs no copy of mllib (whose own code changes more often than the venv)."""
    package = Path(__file__).resolve().parents[1]
    folder = cache_dir() / "mllib" / hashlib.sha256(str(package).encode()).hexdigest()[:16]
    link = folder / "mllib"
    if not link.is_symlink():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"mllib.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(package, target_is_directory=True)
        temporary.replace(link)
    return folder


def list_envs(root: Path | None = None) -> list[dict[str, object]]:
    """The complete venvs of the cache: key, size, last use, and their metadata."""
    root = root or cache_dir()
    found = []
    for path in sorted(root.glob("*/" + META_FILE)) if root.is_dir() else []:
        try:
            meta = json.loads(path.read_text())
            last_used = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        found.append({**meta, "key": path.parent.name, "last_used": last_used})
    return found


def trim(
    cap_bytes: int,
    *,
    keep: set[str] | None = None,
    root: Path | None = None,
    older_than_s: float | None = None,
) -> dict[str, int]:
    """Remove least recently used venvs until the cache holds at most `cap_bytes` (and, with
    `older_than_s`, every one unused that long); never one in use or in `keep`."""
    root = root or cache_dir()
    envs = sorted(list_envs(root), key=lambda e: float(e["last_used"]))  # type: ignore[arg-type]
    total = sum(int(e.get("size", 0)) for e in envs)  # type: ignore[call-overload]
    removed = freed = 0
    cutoff = time.time() - older_than_s if older_than_s is not None else None
    for env in envs:
        stale = cutoff is not None and float(env["last_used"]) < cutoff  # type: ignore[arg-type]
        if (total <= cap_bytes and not stale) or env["key"] in (keep or set()):
            continue
        size = int(env.get("size", 0))  # type: ignore[call-overload]
        if remove(root, str(env["key"])):
            total -= size
            freed += size
            removed += 1
    _remove_incomplete(root)
    return {"envs": removed, "freed_bytes": freed, "envs_bytes": total}


def remove(root: Path, key: str) -> bool:
    """Remove venv `key` unless a run or a build holds it; True when it went."""
    lock = FileLock(lock_file(root, key), record_pid=False)
    if not lock.acquire(0):
        return False
    try:
        (root / key / META_FILE).unlink(missing_ok=True)  # incomplete first: never half-used
        shutil.rmtree(root / key, ignore_errors=True)
        lock.path.unlink(missing_ok=True)
        return True
    finally:
        lock.release()


def _remove_incomplete(root: Path) -> None:
    """Venv folders a killed build left (no metadata) whose lock nobody holds."""
    for path in root.iterdir() if root.is_dir() else []:
        if path.is_dir() and KEY.fullmatch(path.name) and not (path / META_FILE).exists():
            remove(root, path.name)


def lock_file(root: Path, key: str) -> Path:
    """The lock of venv `key`: exclusive while it is built or removed, shared while in use."""
    return root / f"{key}.lock"


def hold(lock_path: str | Path) -> FileLock | None:
    """Hold the venv of `lock_path` (shared) for as long as this process lives, so it is not
    removed from under it (a server started with the venv's python); None when it is gone."""
    lock = FileLock(Path(lock_path), record_pid=False)
    return lock if lock.acquire(0, shared=True) else None


def _complete(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / "bin" / "python").exists()


def _size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _uv_python(minor: str) -> str | None:
    from mllib.runtime.installer import find_uv

    uv = find_uv()
    if uv is None:
        return None
    try:
        found = subprocess.run(
            [uv, "python", "find", "--no-project", minor],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def _pyenv_pythons(minor: str) -> list[str]:
    """pyenv's installed Pythons of `minor` ($PYENV_ROOT/versions/3.12.1/bin/python3.12), the
    newest first."""
    root = userdirs.pyenv_versions()
    found = []
    for python in root.glob(f"{minor}.*/bin/python{minor}"):
        micro = python.parents[1].name.removeprefix(f"{minor}.")
        if micro.isdigit():  # 3.12.1, not 3.12-dev or a virtualenv named 3.12.1-tools
            found.append((int(micro), str(python)))
    return [python for _micro, python in sorted(found, reverse=True)]


def _probe(python: str) -> Interpreter | None:
    try:
        found = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version(), "
             "platform.python_implementation())"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = found.stdout.split()
    return Interpreter(python, parts[0], parts[1]) if found.returncode == 0 and parts else None
