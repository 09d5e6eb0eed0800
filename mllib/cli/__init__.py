"""The command line, a thin layer over mllib's Python API. Entry point: main()."""

from __future__ import annotations

import os
import sys

from mllib.errors import EXIT_CANCELLED, EXIT_FAILED, MllibError


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
        from rich.markup import escape

        console = output.err()
        # soft_wrap: a narrow terminal wraps the line itself; rich would break it mid-list
        console.print(f"[red]Error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            console.print(exc.hint, style="dim", highlight=False, markup=False, soft_wrap=True)
        return exc.exit_code
    except OSError as exc:  # a file or folder the command needed: still one line, not a traceback
        if os.environ.get("MLLIB_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        output.err().print(
            f"Error: {exc.strerror or exc}{where}", highlight=False, markup=False, soft_wrap=True
        )
        output.err().print("MLLIB_DEBUG=1 shows where it happened.", style="dim")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return 0
