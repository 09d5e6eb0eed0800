"""The installer that builds project venvs: uv (a Rust installer, many times faster than pip),
or pip where uv is missing (`MLLIB_INSTALLER=pip|uv` chooses).

Both install from the host's own package sources: pip reads its configuration itself; uv is
given the same index, extra indexes, find-links, trusted hosts, CA bundle and global
constraints (read from `pip config`), and pip's index strategy (the best version from any
index). uv never downloads a Python: it uses one this host has.

>>> installer = choose_installer()  # doctest: +SKIP
>>> run_installer(installer.install(python, "requirements.txt", "constraints.txt"), ...)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mllib.runtime.host_settings import HOST_CA_BUNDLE, pip_config_values, refuse_credentials

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Installer:
    """How to create a venv and install into it with one installer."""

    name: str  # "uv" or "pip"
    uv: str | None = None  # the uv binary, for "uv"
    # The host's pip sources, as uv options and environment (empty for pip, which reads its own).
    options: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()  # the host's global constraints, as uv options
    environ: Mapping[str, str] = field(default_factory=dict)

    def create(self, python: str, target: Path) -> list[str]:
        """The command that makes a venv at `target` with the interpreter `python`."""
        if self.name == "uv":
            return [
                self.uv or "uv",
                "venv",
                "--quiet",
                "--no-project",
                "--python",
                python,
                str(target),
            ]
        return [python, "-m", "venv", str(target)]

    def install(
        self,
        venv_python: str,
        requirements: Path,
        constraints: Path | None,
        *,
        require_hashes: bool = False,
        file_options: list[str] | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """The command (and its environment) that installs `requirements`, within
        `constraints`, into a venv. A locked file (`require_hashes`) is installed as locked:
        the host's global constraints (pip's `constraint` setting) do not apply to it.
        `file_options`: the pip options the requirements file holds (pip reads them there; uv
        is given those it reads only on its command line)."""
        files = ["-r", str(requirements), *(["-c", str(constraints)] if constraints else [])]
        hashes = ["--require-hashes"] if require_hashes else []
        if self.name == "uv":
            global_constraints = [] if require_hashes else list(self.constraints)
            hashes += uv_command_line_options(file_options or [])
            # No bytecode here: runs write it as they import (mllib.runtime.venv).
            command = [self.uv or "uv", "pip", "install", "--python", venv_python,
                       *self.options, *global_constraints, *hashes, *files]  # fmt: skip
            return command, dict(self.environ)
        command = [venv_python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                   "--progress-bar", "off", "--no-compile", *hashes, *files]  # fmt: skip
        return command, {"PIP_CONSTRAINT": ""} if require_hashes else {}


def uv_command_line_options(file_options: list[str]) -> list[str]:
    """What uv needs on its command line for pip options it ignores in a requirements file:
    --pre (prereleases allowed) and --trusted-host (an index without valid TLS)."""
    found: list[str] = []
    for option in file_options:
        words = option.split()
        if words == ["--pre"]:
            found += ["--prerelease", "allow"]
        for flag, value in zip(words[::2], words[1::2], strict=False):
            if flag == "--trusted-host":
                found += ["--allow-insecure-host", value]
    return found


def find_uv() -> str | None:
    """The uv binary of the `uv` package installed with mllib, else one on PATH."""
    try:
        import uv

        found: str = uv.find_uv_bin()
        return found
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def choose_installer(environ: Mapping[str, str] | None = None) -> Installer:
    """uv when it is here (unless MLLIB_INSTALLER=pip), else pip."""
    env = os.environ if environ is None else environ
    wanted = env.get("MLLIB_INSTALLER", "").strip().lower()
    uv = None if wanted == "pip" else find_uv()
    if uv is None:
        return Installer("pip")
    options, constraints, uv_env = uv_settings(env)
    return Installer("uv", uv, options, constraints, uv_env)


def uv_settings(
    environ: Mapping[str, str],
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """The host's pip sources as uv options, its global constraints as uv options, and the
    environment uv runs with."""
    values, _skipped = pip_config_values(environ=environ)
    options: list[str] = ["--index-strategy", "unsafe-best-match"]  # pip's: any index's best
    index = values.get("index-url", "").split()
    if index:
        refuse_credentials("index-url", index[0], "it would show in the run's log")
        options += ["--index-url", index[0]]
    for key, flag in (
        ("extra-index-url", "--extra-index-url"),
        ("find-links", "--find-links"),
        ("trusted-host", "--allow-insecure-host"),
    ):
        for value in values.get(key, "").split():
            options += [flag, value]
    constraints: list[str] = []
    for value in values.get("constraint", "").split():
        constraints += ["--constraint", value]
    if values.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        options.append("--no-index")
    cert = values.get("cert") or environ.get("SSL_CERT_FILE")
    if not cert and os.path.isfile(HOST_CA_BUNDLE):
        cert = HOST_CA_BUNDLE
    # No bytecode at install, whatever the caller's environment says (see mllib.runtime.venv).
    uv_env = {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "UV_COMPILE_BYTECODE": "0"}
    if cert:
        uv_env["SSL_CERT_FILE"] = cert
    return tuple(options), tuple(constraints), uv_env


class InstallFailed(Exception):
    """An installer command failed; `lines` is the end of what it printed."""

    def __init__(self, command: list[str], code: int, lines: list[str]) -> None:
        super().__init__(f"{Path(command[0]).name} exited with {code}")
        self.command = command
        self.code = code
        self.lines = lines


class InstallCancelled(Exception):
    """The run was cancelled while its environment was being built."""


def run_installer(
    command: list[str],
    *,
    environ: Mapping[str, str],
    progress: Progress,
    cancel: threading.Event | None = None,
    cwd: Path | None = None,
) -> None:
    """Run an installer command, each line of its output to `progress`; a set `cancel` stops it.

    Raises InstallFailed (with the last lines) or InstallCancelled."""
    tail: list[str] = []
    stop = threading.Event()
    with subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **environ},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:  # its pipe closed and the process waited for, however this ends
        if cancel is not None:
            threading.Thread(target=_kill_on_cancel, args=(proc, cancel, stop), daemon=True).start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail = [*tail[-199:], line]
                    progress(line)
            code = proc.wait()
        finally:
            stop.set()
    if cancel is not None and cancel.is_set():
        raise InstallCancelled()
    if code != 0:
        raise InstallFailed(command, code, tail)


def _kill_on_cancel(
    proc: subprocess.Popen[str], cancel: threading.Event, stop: threading.Event
) -> None:
    while not stop.is_set():
        if cancel.wait(0.1):
            from mllib.runtime.processes import kill_tree

            kill_tree(proc.pid, 2.0, root_done=lambda: proc.poll() is not None)
            return
