"""`mllib queue`: what is queued and running on the team server."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output


def queue(
    all_: Annotated[bool, typer.Option("--all", help="Everyone's (admins).")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queued and running runs: by user, with model, priority, GPUs, when queued, place in the
    queue and estimated start."""
    from mllib.client.http import Server
    from mllib.client.views import queue as read_queue
    from mllib.project import Project

    server = Server.connect(Project.find().config)
    try:
        data = read_queue(server, everyone=all_)
    finally:
        server.close()
    if json_:
        output.print_json(data)
        return
    grid = output.table(
        "RUN", "USER", "MODEL", "STATE", "PRIORITY", "GPUS", "QUEUED AT", "AGENT", "POSITION",
        "EST. START", whole=("RUN",),
    )  # fmt: skip
    for row in [*data["running"], *data["queued"]]:
        wait = row["estimated_start_s"]
        grid.add_row(
            row["run_id"], row["user"], row["model"], row["state"], str(row["priority"]),
            str(row["gpus"]), output.fmt_time(row["queued_at"]), row["agent"] or "",
            str(row["position"] or ""), "" if wait is None else f"{wait:.0f} s",
        )  # fmt: skip
    output.print_table(grid)
    for user, counts in sorted(data["users"].items()):
        output.err().print(
            f"{user}: {counts['running']} running ({counts['gpus_running']} GPU slots), "
            f"{counts['queued']} queued",
            markup=False,
            highlight=False,
        )
