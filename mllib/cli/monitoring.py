"""`mllib monitoring init [DIR]`: Prometheus, alert rules, a Grafana dashboard and Promtail for
the project's deployments (see mllib.monitoring)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mllib.cli import output

app = typer.Typer(
    help="Monitoring set-ups: Prometheus, alert rules, Grafana, Loki.", no_args_is_help=True
)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write the files into.")] = Path(
        "monitoring"
    ),
    scrape_interval: Annotated[
        str, typer.Option("--scrape-interval", help="How often Prometheus scrapes each server.")
    ] = "15s",
    loki_url: Annotated[
        str, typer.Option("--loki-url", help="Loki's push endpoint, for Promtail.")
    ] = "http://localhost:3100/loki/api/v1/push",
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="The team server's HOST:PORT (or URL), scraped for training runs and the"
            " queue. Default: the team server this project uses (MLLIB_SERVER, [server] url,"
            " or `mllib login`'s).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files already there.")] = False,
) -> None:
    """Write a Prometheus config that finds every live deployment, alert rules, a Grafana
    dashboard and a Promtail config for the deployments' logs."""
    from mllib.monitoring.setup import Options
    from mllib.monitoring.setup import init as write
    from mllib.serving.control.targets import targets_file
    from mllib.workspace import Workspace

    ws = Workspace.find()
    options = Options(scrape_interval=scrape_interval, loki_url=loki_url, server=server)
    written = write(ws, directory, options, force=force)
    console = output.err()
    console.print(f"Wrote the monitoring set-up in {directory}:")
    for path in written:
        console.print(f"  {path}", markup=False)
    console.print(
        f"Prometheus finds live deployments in {targets_file(ws.registry)} (mllib keeps it"
        " current).\n"
        f"Next: prometheus --config.file={written[0]}; import {written[2]} into Grafana; "
        f"promtail -config.file={written[3]}",
        markup=False,
    )
