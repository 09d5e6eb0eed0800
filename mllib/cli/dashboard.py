"""`mllib dashboard` (also `mllib dash`): the terminal UI over runs, queue, agents, deployments."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli.numbers import number_option
from mllib.ranges import COUNT, Range

REFRESH = Range(0.05, 3600)  # seconds between refreshes


def dashboard(
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            "-m",
            help="The metric the runs table shows (default: the newest runs' first).",
            show_default=False,
        ),
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Only these runs: `status:running model:NAME user:NAME words`.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, number_option("--limit", COUNT, help="Runs the table holds (newest first).")
    ] = 1000,
    refresh: Annotated[
        float, number_option("--refresh", REFRESH, help="Seconds between refreshes.")
    ] = 0.25,
    local: Annotated[
        bool,
        typer.Option("--local", help="This project's runs and queue, not the team server's."),
    ] = False,
) -> None:
    """Live runs, metric curves and logs, the queue and agents, and deployments, in the terminal
    (runs and the queue from the team server when one is configured, as `mllib runs list`).

    Keys: enter opens a run, / filters, space marks runs and c compares them, x cancels, R reruns,
    y copies a run id, 1/2/3 switch panes, ctrl+p opens the command palette, q quits.
    """
    from mllib.dashboard.app import run
    from mllib.dashboard.data.runs import RunFilter

    run_filter = RunFilter.parse(filter_) if filter_ else None
    run(metric=metric, run_filter=run_filter, limit=limit, refresh_s=refresh, local=local)
