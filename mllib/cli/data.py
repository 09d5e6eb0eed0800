"""`mllib data ...`: upload, list, show and remove datasets."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.errors import EXIT_CANCELLED
from mllib.ranges import POSITIVE

app = typer.Typer(
    help="Upload files, folders and URLs once as versioned datasets, and hand them to runs "
    "with `--data KEY=NAME[@VERSION]`.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
LocalOpt = Annotated[
    bool,
    typer.Option(
        "--local", help="This project's datasets, not the team server's (when logged in)."
    ),
]
SHOWN_FILES = 20


def _bytes(n: int) -> str:
    from mllib.datasets.format import human_bytes

    return human_bytes(n)


@app.command()
def upload(
    source: Annotated[str, typer.Argument(help="A file, a folder, or an http(s) URL.")],
    name: Annotated[str, typer.Option("--name", "-n", help="The dataset's name.")],
    max_size_gb: Annotated[
        float | None,
        number_option(
            "--max-size-gb",
            POSITIVE,
            help="Refuse anything larger (default: [data] max_size_gb, else 10).",
            show_default=False,
        ),
    ] = None,
    allow_private_urls: Annotated[
        bool,
        typer.Option(
            "--allow-private-urls",
            help="Let a URL (or its redirects) reach loopback or private addresses (refused by "
            "default; [data] allow_private_urls in mllib.toml for every upload).",
        ),
    ] = False,
    json_: JsonOpt = False,
    local: LocalOpt = False,
) -> None:
    """Upload a file, folder or URL as a new version of a dataset; prints NAME@VERSION.

    Only what the store lacks is written; with a team server, only the chunks the server lacks
    are sent. Interrupted (Ctrl-C, crash, network drop)? Run the same command again: it resumes
    and says how much it skipped.
    """
    from mllib.cli.account import server_url
    from mllib.cli.progress import TransferProgress

    url = server_url(local)
    if url is None:
        from mllib.datasets import upload as upload_dataset
    else:
        from mllib.client.datasets import upload as upload_dataset
    console = output.err()
    try:
        with TransferProgress() as progress:
            result = upload_dataset(
                source,
                name,
                progress=progress,
                max_size_gb=max_size_gb,
                allow_private_urls=allow_private_urls or None,
            )
    except KeyboardInterrupt:
        console.print(
            "\nUpload interrupted. Run the same command again to resume: what was stored is kept."
        )
        raise typer.Exit(EXIT_CANCELLED) from None
    v, stats = result.version, result.stats
    skipped = stats.bytes_skipped + stats.bytes_resumed
    if result.created:
        console.print(
            styled(
                "[green]✔[/] Uploaded [bold]{}[/] · {} file(s) · {} · sha256 {}",
                v.ref,
                v.file_count,
                _bytes(v.size),
                v.sha256[:16],
            )
        )
    else:
        console.print(
            styled(
                "[bold]{}[/] already holds this content (sha256 {}): no new version.",
                v.ref,
                v.sha256[:16],
            )
        )
    stored, where = ("Stored", "the store") if url is None else ("Sent", f"the team server {url}")
    if stats.bytes_stored == 0:
        console.print(f"  {stored} 0 B: every chunk was already in {where}.", markup=False)
    else:
        console.print(
            f"  {stored} {_bytes(stats.bytes_stored)} in {stats.chunks_stored} new chunk(s)"
            + (f" to {where}" if url else "")
            + (f"; skipped {_bytes(skipped)} already stored." if skipped else "."),
            markup=False,
        )
    if stats.bytes_resumed:
        console.print(
            f"  Resumed an interrupted upload: {_bytes(stats.bytes_resumed)} were not sent again."
        )
    if json_:
        output.print_json(result.as_dict())
    else:
        print(output.printable(v.ref))


@app.command("list")
def list_(json_: JsonOpt = False, local: LocalOpt = False) -> None:
    """List datasets with their latest version (the team's, on a team server)."""
    from mllib.cli.account import team_server
    from mllib.datasets import list_datasets, pending

    server = team_server(local)
    if server is None:
        rows = list_datasets()
    else:
        from mllib.client.datasets import list_datasets as list_remote

        try:
            rows = list_remote(server)
        finally:
            server.close()
    if json_:
        output.print_json(rows)
        return
    for upload in pending() if server is None else []:
        output.err().print(
            f"Interrupted upload of {upload['name']} from {upload['source']} "
            f"({upload['chunks']} chunk(s) stored): run the same `mllib data upload` to resume.",
            markup=False,
        )
    if not rows:
        output.err().print("No datasets yet. Upload one with `mllib data upload PATH --name NAME`.")
        return
    table = output.table(
        "NAME", "LATEST", "VERSIONS", "KIND", "FILES", "SIZE", "CREATED", "BY", "SOURCE",
        whole=("NAME",),
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r["name"],
            str(r["version"]),
            str(r["versions"]),
            r["kind"],
            str(r["file_count"]),
            _bytes(r["size"]),
            output.fmt_time(r["created_at"]),
            r["user"] or "",
            r["source"] or "",
        )
    output.print_table(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME@VERSION.")],
    json_: JsonOpt = False,
    local: LocalOpt = False,
) -> None:
    """Show one dataset version: content hash, size, files, and the runs that used it (yours,
    on a team server)."""
    from mllib.cli.account import team_server
    from mllib.datasets import show as show_dataset

    server = team_server(local)
    if server is None:
        data = show_dataset(ref)
    else:
        from mllib.client.datasets import show as show_remote

        try:
            data = show_remote(server, ref)
        finally:
            server.close()
    if json_:
        output.print_json(data)
        return
    console = output.out()
    console.print(styled("[bold]Dataset {}[/]  ({})", data["ref"], data["kind"]))
    rows = [
        ("sha256", data["sha256"]),
        (
            "size",
            f"{_bytes(data['size'])} in {data['file_count']} file(s), {data['chunk_count']} chunk(s)",
        ),
        ("source", data["source"]),
        ("created", f"{output.fmt_time(data['created_at'])} by {data['user']}"),
        ("versions", ", ".join(str(v) for v in data["versions"])),
    ]
    for key, value in rows:
        console.print(f"  {key + ':':<9} {value}", markup=False)
    console.print("Files", style="bold")
    for f in data["files"][:SHOWN_FILES]:
        console.print(
            f"  {f['path']:<40} {_bytes(f['size']):>10}  {f['sha256'][:16]}", markup=False
        )
    if len(data["files"]) > SHOWN_FILES:
        console.print(f"  … and {len(data['files']) - SHOWN_FILES} more (all with --json)")
    if data["runs"]:
        console.print("Used by runs", style="bold")
        for r in data["runs"]:
            console.print(f"  {r['run_id']}  as {r['env']}", markup=False)


@app.command()
def rm(
    ref: Annotated[
        str, typer.Argument(help="NAME@VERSION for one version, NAME for every version.")
    ],
    local: LocalOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Remove a dataset version (or all of a dataset's versions) and free what nothing else uses.

    Runs keep their record of what they read; version numbers are never reused. On a team
    server: a dataset you uploaded first (admins: any), refused while a queued or running run
    reads it.
    """
    from mllib.cli.account import team_server
    from mllib.datasets import remove

    server = team_server(local)
    if server is None:
        result = remove(ref).as_dict()
    else:
        from mllib.client.datasets import remove as remove_remote

        try:
            result = remove_remote(server, ref)
        finally:
            server.close()
    if json_:
        output.print_json(result)
        return
    console = output.err()
    removed = ", ".join(f"{v['name']}@{v['version']}" for v in result["removed"])
    console.print(f"Removed {removed}.", markup=False)
    if result["deferred"]:
        console.print("  An upload is running: unused chunks are freed by a later `mllib data rm`.")
    elif result["chunks_freed"]:
        console.print(
            f"  Freed {_bytes(result['bytes_freed'])} ({result['chunks_freed']} chunk(s))."
        )


import_app = typer.Typer(
    help="Import a dataset from an annotation tool's export.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


@import_app.command("label-studio")
def label_studio(
    export: Annotated[str, typer.Argument(help="Label Studio's JSON export (a list of tasks).")],
    name: Annotated[str, typer.Option("--name", "-n", help="The dataset's name.")],
    json_: JsonOpt = False,
) -> None:
    """Turn a Label Studio JSON export into a dataset version (examples.jsonl: one annotated
    task a line, its controls' values; and the export itself); prints NAME@VERSION."""
    from pathlib import Path

    from mllib.cli.progress import TransferProgress
    from mllib.datasets.label_studio import import_export

    with TransferProgress() as progress:
        result = import_export(Path(export), name, progress=progress)
    v = result.upload.version
    skipped = f"; {result.skipped} without an annotation left out" if result.skipped else ""
    state = "Imported" if result.upload.created else "Already held"
    output.err().print(
        styled(
            "[green]✔[/] {} [bold]{}[/]: {} annotated task(s){}",
            state,
            v.ref,
            result.examples,
            skipped,
        )
    )
    if json_:
        output.print_json(
            {**result.upload.as_dict(), "examples": result.examples, "skipped": result.skipped}
        )
    else:
        print(v.ref)
