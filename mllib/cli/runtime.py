"""`mllib runtime ...`: prepare the Docker runtime ahead of a run (base image, project image)."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.output import styled

app = typer.Typer(
    help="Prepare the Docker runtime: build the base image, or a project's image ahead of a run.",
    no_args_is_help=True,
)


def _say(line: str) -> None:
    output.err().print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("build-base")
def build_base(
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag", help="The tag to build (default: mllib/base:bookworm-py3).", show_default=False
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            help="Debian mirror (default: the one this host's apt uses).",
            show_default=False,
        ),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build again even if it exists.")
    ] = False,
) -> None:
    """Build a Debian bookworm + Python 3 base image with no image registry (needs root).

    It is made with debootstrap from the host's Debian mirror and imported into the local
    Docker engine. `[runtime] base_image` in mllib.toml names it (this tag is the default).
    """
    from mllib.runtime.base_image import DEFAULT_TAG, build_base_image

    tag = tag or DEFAULT_TAG
    image = build_base_image(tag, mirror=mirror, rebuild=rebuild, progress=_say)
    output.err().print(styled("Base image [bold]{}[/] is ready ({}).", tag, image[:19]))
    output.err().print(
        f'Runs use it when mllib.toml says: [runtime] base_image = "{tag}"', markup=False
    )


@app.command("build")
def build(
    project: Annotated[
        str, typer.Argument(help="The project folder (or a file in it).", show_default=False)
    ] = ".",
) -> None:
    """Build the project's image now (what the first Docker run would do) and print its tag."""
    from mllib.runtime.images import build_project_image

    tag = build_project_image(project, progress=_say)
    print(tag)
