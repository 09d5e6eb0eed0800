"""`mllib init`: start a project from a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mllib.cli import output
from mllib.errors import UsageError


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    template: Annotated[
        str, typer.Option("--template", "-t", help="minimal, sklearn or pytorch.")
    ] = "minimal",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    ci: Annotated[
        str | None,
        typer.Option(
            "--ci",
            help="Write a CI workflow (github: .github/workflows/mllib.yml) into the project.",
            show_default=False,
        ),
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="With --ci: a gate on evaluate()'s metrics, METRIC=NUMBER. Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a working model.py, mllib.toml and .env.local that train offline; with --ci, a CI
    workflow (into a project already there, or with the template's files)."""
    from mllib.scaffold import init_ci

    console = output.err()
    if fail_under and not ci:
        raise UsageError(
            "--fail-under goes with --ci", hint="mllib init --ci github --fail-under accuracy=0.9"
        )
    if ci:
        has_project = (directory / "mllib.toml").exists() or (directory / "model.py").exists()
        if not has_project:
            _write_project(console, directory, template, force)
        workflow = init_ci(directory, ci, fail_under=fail_under, force=force)
        console.print(f"Wrote {workflow}", markup=False)
        console.print(
            "Next: commit it; add the repository secrets MLLIB_API_KEY and MLLIB_SERVER_URL "
            "where you use them (see the file's comments)."
        )
        return
    _write_project(console, directory, template, force)


def _write_project(console, directory: Path, template: str, force: bool) -> None:
    from mllib.scaffold import init_project

    written = init_project(directory, template, force=force)
    console.print(f"Created a {template} project in {directory}:")
    for path in written:
        console.print(f"  {path}", markup=False)
    cd = "" if directory == Path(".") else f"cd {directory} && "
    console.print(f"Next: {cd}mllib train model.py --evaluate")
