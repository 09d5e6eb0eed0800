"""The workspace a command acts in: a command that only reads opens none where nothing was
recorded (it creates no `.mllib/` there) and says when there is no project at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mllib.workspace import Workspace


def reading() -> Workspace:
    """The workspace of a command that only reads (lists, shows, logs): an empty registry in
    memory where nothing was recorded yet, with a note on stderr when no project is here."""
    from mllib.config import CONFIG_FILE
    from mllib.terminal import note, printable
    from mllib.workspace import Workspace

    ws = Workspace.find(read_only=True)
    if not ws.recorded and not (ws.project.root / CONFIG_FILE).exists():
        note(
            f"No mllib project in {printable(str(ws.project.root))} or above (no {CONFIG_FILE}, "
            "nothing recorded here): run mllib in your project's folder."
        )
    return ws
