"""The command line, a thin layer over mllib's Python API. Entry point: main()."""

from __future__ import annotations

import errno
import os
import sys

from mllib.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_SYSTEM, MllibError

FULL = {errno.ENOSPC, errno.EDQUOT}
# The machine failing the command (a full or failing disk), not the command itself: exit 3.
SYSTEM_ERRNOS = FULL | {errno.EIO, errno.EROFS}


def main(argv: list[str] | None = None) -> int:
    """Run `mllib`; known errors print one clear message (MLLIB_DEBUG=1 shows the traceback)."""
    from mllib.cli import output
    from mllib.cli.app import app, command_names
    from mllib.cli.argv import rewrite

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = rewrite(args, command_names())
        app(args=args, prog_name="mllib", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MllibError as exc:
        if os.environ.get("MLLIB_DEBUG"):
            raise
        from mllib.terminal import styled

        console = output.err()
        # soft_wrap: a narrow terminal wraps the line itself; rich would break it mid-list
        console.print(styled("[red]Error:[/] {}", exc.message), soft_wrap=True)
        if exc.hint:
            console.print(exc.hint, style="dim", soft_wrap=True)
        return exc.exit_code
    except OSError as exc:  # a file or folder the command needed: still one line, not a traceback
        if os.environ.get("MLLIB_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        output.err().print(f"Error: {exc.strerror or exc}{where}", soft_wrap=True)
        system = exc.errno in SYSTEM_ERRNOS
        hint = "Free some space, then run the command again." if exc.errno in FULL else None
        output.err().print(hint or "MLLIB_DEBUG=1 shows where it happened.", style="dim")
        return EXIT_SYSTEM if system else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return 0
