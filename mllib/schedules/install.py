"""What runs the due schedules without a team server: a systemd timer (a user unit) or a cron
line, each calling `mllib schedules run-due` in the project every minute. run-due is cheap when
nothing is due (one registry query), claims each due schedule before running it (two timers
never run one twice) and moves its next time on by its period, so a machine that was off runs
each missed schedule once, not once per missed period.

>>> print(cron_line(Path("/srv/iris"), ["/usr/bin/mllib"]))  # doctest: +NORMALIZE_WHITESPACE
* * * * * cd /srv/iris && /usr/bin/mllib schedules run-due >>/srv/iris/.mllib/schedules/run-due.log 2>&1
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mllib.errors import UsageError
from mllib.userdirs import systemd_user_dir

LOG_FILE = ".mllib/schedules/run-due.log"  # the cron line's output (systemd's goes to the journal)


def mllib_command() -> list[str]:
    """The command that runs this mllib: its `mllib` script beside this Python, else -m."""
    script = Path(sys.executable).parent / "mllib"
    if script.is_file():
        return [str(script)]
    found = shutil.which("mllib")
    return [found] if found else [sys.executable, "-m", "mllib"]


def unit_name(project_root: Path) -> str:
    """`mllib-schedules-NAME-HASH`: one timer per project (NAME: the folder's, for people)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", project_root.name).strip("-")[:40] or "project"
    digest = hashlib.sha256(str(project_root).encode()).hexdigest()[:8]
    return f"mllib-schedules-{slug}-{digest}"


def _plain_path(project_root: Path) -> None:
    """A usage error for a project folder whose path holds a control character: a newline would
    start another crontab entry or unit line, an escape sequence would reach the terminal."""
    if not str(project_root).isprintable():
        from mllib.safetext import printable

        raise UsageError(
            f"The project folder's path holds control characters: {printable(str(project_root))}",
            hint="Move the project to a folder whose path is plain text, then install again.",
        )


def cron_line(project_root: Path, command: list[str] | None = None) -> str:
    """A crontab line running the due schedules of the project at `project_root` each minute."""
    _plain_path(project_root)
    words = " ".join(shlex.quote(w) for w in (command or mllib_command()))
    root = shlex.quote(str(project_root))
    log = shlex.quote(str(project_root / LOG_FILE))
    return f"* * * * * cd {root} && {words} schedules run-due >>{log} 2>&1"


def cron_install(project_root: Path) -> str:
    """The cron line, with the folder of its log made (cron's shell would not make it)."""
    (project_root / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    return cron_line(project_root)


@dataclass(frozen=True)
class Units:
    """A systemd service (one run of run-due) and the timer starting it every minute."""

    name: str
    service: str
    timer: str


def systemd_units(project_root: Path, command: list[str] | None = None) -> Units:
    _plain_path(project_root)
    name = unit_name(project_root)
    exec_start = " ".join(_systemd_quote(w) for w in (command or mllib_command()))
    service = (
        "[Unit]\n"
        f"Description=mllib: run the due scheduled evaluations of {project_root}\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"WorkingDirectory={project_root}\n"
        f"ExecStart={exec_start} schedules run-due\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=mllib: check for due scheduled evaluations of {project_root} every minute\n\n"
        "[Timer]\n"
        "OnCalendar=*-*-* *:*:00\n"
        "Persistent=true\n"
        f"Unit={name}.service\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return Units(name, service, timer)


def write_systemd(
    project_root: Path, directory: Path | None = None, *, force: bool = False
) -> list[Path]:
    """Write the units into `directory` (default: the user's systemd folder); returns their paths.
    Units there already with other content are refused unless `force`."""
    units = systemd_units(project_root)
    folder = directory.expanduser() if directory else systemd_user_dir()
    files = {
        folder / f"{units.name}.service": units.service,
        folder / f"{units.name}.timer": units.timer,
    }
    clash = [p for p, text in files.items() if p.exists() and p.read_text() != text]
    if clash and not force:
        raise UsageError(
            f"{clash[0]} exists with other content",
            hint="Add --force to overwrite it (mllib wrote it for this project before).",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def _systemd_quote(word: str) -> str:
    """A word of a unit file's command line: quoted when it holds a space, quote or backslash."""
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
