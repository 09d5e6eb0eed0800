"""The command line, a thin layer over mllib's Python API. Entry point: main()."""

from __future__ import annotations

import errno
import os
import sys

from mllib.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_SYSTEM, EXIT_USAGE, MllibError

FULL = {errno.ENOSPC, errno.EDQUOT}
# The machine failing the command (a full or failing disk), not the command itself: exit 3.
SYSTEM_ERRNOS = FULL | {errno.EIO, errno.EROFS}


def main(argv: list[str] | None = None) -> int:
    """Run `mllib`; known errors and usage errors print one clear message (`-v` or MLLIB_DEBUG=1
    shows the traceback)."""
    import typer

    # typer vendors click as typer._click (0.27 and later; pyproject.toml bounds typer)
    from typer._click import exceptions as click_errors

    from mllib.cli.app import command, command_names
    from mllib.cli.argv import rewrite

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = rewrite(args, command_names())
        code = command().main(args=args, prog_name="mllib", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click_errors.NoArgsIsHelpError as exc:  # `mllib`, `mllib runs`: their help
        print(exc.ctx.get_help())
        return EXIT_USAGE
    except click_errors.UsageError as exc:
        _print_error(_usage_message(exc), _usage_hint(exc))
        return EXIT_USAGE
    except typer.Abort:
        _print_error("Aborted.", None)
        return EXIT_FAILED
    except MllibError as exc:
        if os.environ.get("MLLIB_DEBUG"):
            raise
        _print_error(exc.message, exc.hint)
        return exc.exit_code
    except OSError as exc:  # a file or folder the command needed: still one line, not a traceback
        if os.environ.get("MLLIB_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        system = exc.errno in SYSTEM_ERRNOS
        hint = "Free some space, then run the command again." if exc.errno in FULL else None
        _print_error(
            f"{exc.strerror or exc}{where}", hint or "MLLIB_DEBUG=1 shows where it happened."
        )
        return EXIT_SYSTEM if system else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return code if isinstance(code, int) else 0


def _print_error(message: str, hint: str | None) -> None:
    """`Error: message` and its hint, one line each (after the traceback, with `-v`)."""
    from mllib import terminal

    console = terminal.err()
    if terminal.verbose() and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    # soft_wrap: a narrow terminal wraps the line itself; rich would break it mid-list
    console.print(terminal.styled("[red]Error:[/] {}", message), highlight=False, soft_wrap=True)
    if hint:
        console.print(hint, style="dim", highlight=False, markup=False, soft_wrap=True)


def _usage_message(exc) -> str:
    """click's message, with the closest name for an unknown option: `No such option --detatch:
    did you mean --detach?`"""
    from typer._click import exceptions as click_errors

    if isinstance(exc, click_errors.NoSuchOption):
        message = f"No such option {exc.option_name}"
        # click lists the close names best first; name the closest.
        return f"{message}: did you mean {exc.possibilities[0]}?" if exc.possibilities else message
    return exc.format_message()


def _usage_hint(exc) -> str | None:
    """The command's usage line, and where its help is."""
    if exc.ctx is None:
        return None
    return f"{exc.ctx.get_usage().strip()}  (more: {exc.ctx.command_path} --help)"
