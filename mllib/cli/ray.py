"""`mllib ray ...`: the Ray cluster that `--runtime ray` runs go to."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.output import styled

app = typer.Typer(
    help="The Ray cluster of --runtime ray runs ([ray] address in mllib.toml).",
    no_args_is_help=True,
)


@app.command()
def check(
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="The head's Jobs API URL (default: [ray] address, else $RAY_ADDRESS, else "
            "http://127.0.0.1:8265).",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reach the cluster: its address, Ray version, CPUs and GPUs free, running jobs, auth."""
    from dataclasses import replace

    from mllib.project import Project
    from mllib.runtime.ray.client import check as check_cluster
    from mllib.runtime.ray.settings import RaySettings

    settings = RaySettings.from_config(Project.find().config)
    if address:
        settings = replace(settings, address=address)
    report = check_cluster(settings)
    if json_:
        output.print_json(report.as_dict())
        return
    output.err().print(styled("[green]✔[/] The Ray cluster at [bold]{}[/] answers", report.address))
    console = output.out()
    for label, value in (
        ("address", report.address),
        ("ray", report.version),
        ("cpus", f"{report.cpus_free:g} free of {report.cpus_total:g}"),
        ("gpus", f"{report.gpus_free:g} free of {report.gpus_total:g}"),
        ("running jobs", str(report.jobs_running)),
        ("auth", report.auth),
    ):
        console.print(f"{label:>13}  {value}", markup=False, highlight=False)
