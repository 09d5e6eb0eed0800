"""`mllib init`: start a project from a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mllib.cli import output


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    template: Annotated[
        str, typer.Option("--template", "-t", help="minimal, sklearn or pytorch.")
    ] = "minimal",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a working model.py, mllib.toml and .env.local that train offline."""
    from mllib.scaffold import init_project

    written = init_project(directory, template, force=force)
    console = output.err()
    console.print(f"Created a {template} project in {directory}:")
    for path in written:
        console.print(f"  {path}", markup=False)
    cd = "" if directory == Path(".") else f"cd {directory} && "
    console.print(f"Next: {cd}mllib train model.py --evaluate")
