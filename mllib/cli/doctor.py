"""`mllib doctor`: check the registry, run folders and store; repair, back up or restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.output import styled


def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild the registry from the run folders when it is lost or damaged (or add "
            "folders it lacks), and move damaged blobs aside.",
        ),
    ] = False,
    backup: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            help="Copy the registry to this file (SQLite's online backup; commands may go on).",
            show_default=False,
        ),
    ] = None,
    restore: Annotated[
        Path | None,
        typer.Option(
            "--restore",
            help="Make this backup the registry (the current one is moved aside, not deleted).",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check that the registry is whole, that it knows every run folder, and that every stored
    blob still matches its hash; exit 1 when something needs repair.

    Run it while no other mllib command runs when it repairs or restores.
    """
    from mllib import doctor as doc
    from mllib.errors import UsageError
    from mllib.registry.backup import backup as backup_registry
    from mllib.registry.backup import restore as restore_registry
    from mllib.workspace import Workspace

    if sum((repair, backup is not None, restore is not None)) > 1:
        raise UsageError("Give one of --repair, --backup and --restore")
    ws = Workspace.find()
    path = ws.project.registry_path
    console = output.err()
    if backup is not None:
        dest = backup_registry(
            path, backup, busy_timeout_s=ws.project.config.registry.busy_timeout_s
        )
        console.print(f"Backed up the registry {path} to {dest}", markup=False)
        return
    if restore is not None:
        aside = restore_registry(path, restore)
        console.print(f"Restored the registry {path} from {restore}", markup=False)
        if aside is not None:
            console.print(f"  The one it replaced is kept as {aside}", markup=False)
    report = doc.repair(ws) if repair else doc.check(ws)
    if json_:
        output.print_json(report.as_dict())
    else:
        _print(report, path)
    if not report.ok and restore is None:  # a restore that worked says what else to do, exit 0
        raise typer.Exit(1)


def _print(report, path: Path) -> None:
    console = output.err()
    for line in report.repaired:
        console.print(f"Repaired: {line}", markup=False)
    runs = f"{report.runs} run(s), {report.run_folders} run folder(s)"
    console.print(f"Registry  {path}: {report.registry} ({runs})", markup=False)
    console.print(
        f"Store     {report.blobs_checked} blob(s) and {report.chunks_checked} dataset chunk(s) "
        "hashed again",
        markup=False,
    )
    if report.ok:
        console.print(styled("[green]✔[/] Nothing needs repair."))
        return
    for problem in report.problems:
        console.print(styled("[red]✘[/] {}: {}", problem.what, problem.detail))
        console.print(f"  fix: {problem.fix}", markup=False, style="dim")
