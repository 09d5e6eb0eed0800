"""`python -m mllib_agent.runner supervise --project WORK RUN_ID`: a run's supervisor on the agent.

mllib's own supervisor (`python -m mllib.runs`, same arguments, same process), and when it ends,
however the run ended, the run's env file goes: its values (secrets among them) were read when
the run started, and must not stay on the host until mllib syncs the run, which may be never.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mllib_agent import housekeeping


def main(argv: list[str] | None = None) -> int:
    from mllib.runs.__main__ import main as supervise_main

    args = sys.argv[1:] if argv is None else argv
    try:
        return supervise_main(args)
    finally:
        drop_own_env_file(args)


def drop_own_env_file(args: list[str]) -> None:
    """Remove the env file of the run these supervisor arguments name, once it is not active."""
    from mllib.workspace import Workspace

    project = Path(args[args.index("--project") + 1])
    root = project.parents[1]  # the agent's root: its runs work in ROOT/work/RUN_ID
    ws = Workspace.find(project)
    try:
        with housekeeping.start_lock(root):
            housekeeping.drop_env_files(root, ws.registry, [args[-1]])
    finally:
        ws.registry.close()


if __name__ == "__main__":
    sys.exit(main())
