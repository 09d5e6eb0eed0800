"""Progress on stderr: a live bar in a real terminal (a pseudo-terminal here), plain lines elsewhere."""

import os
import pty
import subprocess
import sys

SCRIPT = """
from rich.progress import BarColumn, TextColumn
from mllib import terminal

print("animated" if terminal.animated() else "plain", flush=True)
if terminal.animated():
    bar = terminal.bar(TextColumn("{task.description}"), BarColumn())
    task = bar.add_task("copying weights", total=2)
    bar.advance(task, 2)
    bar.stop()
    status = terminal.spinner()
    status.update("building the image")
    status.stop()
terminal.line("[1/2] as [bold]written[/]")
"""


def _run(env_extra: dict[str, str]) -> str:
    """Run SCRIPT with stdout and stderr on a pseudo-terminal; return all it wrote."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "COLUMNS")}
    env.update(TERM="xterm", **env_extra)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_live_bar_and_lines_as_written():
    shown = _run({})
    assert "animated" in shown
    assert "copying weights" in shown and "\x1b[" in shown  # drawn with escape codes
    assert "building the image" in shown
    assert "[1/2] as [bold]written[/]" in shown  # brackets are not rich markup


def test_ci_gets_plain_lines_only():
    shown = _run({"CI": "true"})
    assert "plain" in shown and "copying weights" not in shown
    assert "[1/2] as [bold]written[/]" in shown


def test_quiet_draws_no_progress_even_on_a_terminal():
    shown = _run({"MLLIB_QUIET": "1"})
    assert "plain" in shown and "copying weights" not in shown
    assert "[1/2]" not in shown
