"""`mllib runs ...`: list, show, compare, logs, plot, cancel, rerun and export runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mllib.cli import completion, output, step_summary
from mllib.cli.account import team_server as _server
from mllib.cli.numbers import number_option
from mllib.cli.output import fmt_duration, fmt_time, fmt_value, status_text, styled
from mllib.display import evaluation_cell, evaluation_source
from mllib.ranges import COUNT

app = typer.Typer(help="Inspect and control recorded runs.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
LocalOpt = Annotated[
    bool, typer.Option("--local", help="This machine's runs, not the team server's.")
]


RunIdArg = Annotated[
    str, typer.Argument(help="Run id (or a unique prefix).", autocompletion=completion.run_ids)
]


def _ws(*, read_only: bool = False):
    from mllib.cli.workspaces import reading
    from mllib.runs.control import reconcile
    from mllib.workspace import Workspace

    ws = reading() if read_only else Workspace.find()
    reconcile(ws)
    return ws


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status.", show_default=False)
    ] = None,
    limit: Annotated[int, number_option("--limit", COUNT, help="At most this many runs.")] = 20,
    all_: Annotated[
        bool, typer.Option("--all", help="Everyone's runs (team server admins).")
    ] = False,
    local: LocalOpt = False,
    json_: JsonOpt = False,
) -> None:
    """List runs, newest first (on the team server when one is configured: yours)."""
    server = _server(local)
    if server is not None:
        from mllib.client.views import list_runs

        with server.http:
            runs = list_runs(server, status=status, limit=limit, everyone=all_)
    else:
        from mllib.runs.views import list_dicts

        runs = list_dicts(_ws(read_only=True), status=status, limit=limit)
    if json_:
        output.print_json(runs)
        return
    if not runs:
        output.err().print("No runs yet. Start one with `mllib train model.py`.")
        return
    table = output.table(
        "ID", "MODEL", "ACTION", "STATUS", "CREATED", "DURATION", "EVAL", whole=("ID",)
    )
    for r in runs:
        status_cell = status_text(r["status"])
        if r["failure_class"]:
            status_cell.append(f" ({r['failure_class']})")
        # A training run shows its latest evaluation (own or a later `mllib evaluate`).
        evaluation = r["evaluation"] or {"eval_metrics": r["eval_metrics"]}
        evals = evaluation_cell(evaluation, r["evaluations"])
        table.add_row(
            r["id"],
            r["model"],
            r["action"],
            status_cell,
            fmt_time(r["created_at"]),
            fmt_duration(r["duration_s"]),
            evals,
        )
    output.print_table(table)


def _deployed(deployment: dict | None) -> str | None:
    """The deployment a scheduled evaluation on a team server evaluated the version of."""
    if not deployment:
        return None
    d = deployment
    return f"{d['model']} v{d['version']} on {d['env']} (deployment {d['id']} by {d['user']})"


@app.command()
def show(
    run_id: RunIdArg,
    local: LocalOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Show one run: status, params, metrics, evaluation, artifacts, code hash, timings, log path."""
    from rich.table import Table

    from mllib.runs.views import environment_lines

    server = _server(local)
    if server is not None:
        from mllib.client.views import show as show_remote

        with server.http:
            data = show_remote(server, run_id)
    else:
        from mllib.runs.views import show as show_run

        data = show_run(_ws(read_only=True), run_id)
    if json_:
        output.print_json(data)
        return
    console = output.out()
    header = styled("[bold]Run {}[/]  ", data["id"]) + status_text(data["status"])
    if data["failure_class"]:
        header += styled(" ([red]{}[/])", data["failure_class"])
    console.print(header)
    if data["error"]:
        console.print(f"  error:    {output.hanging(data['error'], 12)}")
    rows = [
        (
            "model",
            f"{data['model']} ({data['model_file']})"
            + (f", version {data['model_version']}" if data["model_version"] else ""),
        ),
        ("action", data["action"]),
        (
            "runtime",
            (data["runtime"] or "-")
            + (f" ({data['runtime_note']})" if data["runtime_note"] else ""),
        ),
        ("host", data["host"] if data["host"] not in (None, "local") else None),
        ("waiting", data["phase"] if data["status"] == "queued" else None),
        ("created", fmt_time(data["created_at"])),
        ("duration", fmt_duration(data["duration_s"])),
        ("seed", data["seed"]),
        ("code hash", data["code_hash"]),
        ("evaluated", data["source_run_id"]),
        ("deployed", _deployed(data.get("deployment"))),
        ("rerun of", data["rerun_of"]),
        ("log", data["log_path"]),
    ]
    for key, value in rows:
        if value is not None:
            console.print(f"  {key + ':':<10} {value}")
    if len(data["attempts"]) > 1:
        console.print("Attempts", style="bold")
        for a in data["attempts"]:
            why = f": {a['reason']}" if a["reason"] else ""
            console.print(f"  {a['attempt']}. {a['agent']} {a['status']}{why}")
    if data["params"]:
        console.print("Params", style="bold")
        for k, v in data["params"].items():
            console.print(f"  {k} = {fmt_value(v)}")
    if data["metric_summary"]:
        table = Table("METRIC", "LAST", "MIN", "MAX", "POINTS", box=None, title_justify="left")
        for name, s in data["metric_summary"].items():
            table.add_row(
                name,
                fmt_value(s["last"]),
                fmt_value(s["min"]),
                fmt_value(s["max"]),
                str(s["count"]),
            )
        console.print("Metrics", style="bold")
        console.print(table)
    evaluation = data["evaluation"]
    if evaluation:
        source = evaluation_source(evaluation, data["evaluations"], data["id"])
        console.print(styled("[bold]Evaluation[/] ({})", source))
    elif data["eval_metrics"]:
        console.print("Evaluation", style="bold")
    for k, v in (evaluation or data)["eval_metrics"].items():
        console.print(f"  {k} = {fmt_value(v)}")
    if data["datasets"]:
        console.print("Datasets", style="bold")
        for d in data["datasets"]:
            console.print(
                f"  {d['env']:<20} {d['name'] + '@' + str(d['version']):<30} {d['sha256'][:16]}",
            )
    if data["artifacts"]:
        console.print("Artifacts", style="bold")
        for a in data["artifacts"]:
            console.print(
                f"  {a['path']:<30} {a['kind']:<6} {a['size']:>10,} B  {a['sha256'][:16]}",
            )
    lines = environment_lines(data["environment"], data["submitted_python"])
    if lines:
        console.print("Environment", style="bold")
        for key, value in lines:
            console.print(f"  {key + ':':<10} {value}")


@app.command()
def compare(
    run_ids: Annotated[
        list[str], typer.Argument(help="Two or more run ids.", autocompletion=completion.run_ids)
    ],
    local: LocalOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Params and metrics of runs side by side: differences highlighted, the best value per metric marked."""
    from rich.table import Table

    from mllib.errors import UsageError
    from mllib.runs.views import compare as compare_runs

    if len(run_ids) < 2:
        raise UsageError("compare needs at least two run ids")
    server = _server(local)
    if server is not None:
        from mllib.client.views import compare as compare_remote

        with server.http:
            data = compare_remote(server, run_ids)
    else:
        data = compare_runs(_ws(read_only=True), run_ids)
    if step_summary.enabled():
        step_summary.append(step_summary.comparison(data))
    if json_:
        output.print_json(data)
        return
    table = Table("", *data["runs"], box=None)
    for section in ("params", "metrics", "eval_metrics"):
        if not data[section]:
            continue
        table.add_row(output.text(section.replace("_", " "), "bold"))
        for key, values in data[section].items():
            differs = key in data["differs"][section]
            best = data["best"][section].get(key) if section != "params" else None
            cells = []
            for run_id in data["runs"]:
                value = fmt_value(values.get(run_id))
                if best == run_id and differs:
                    cells.append(output.text(f"{value} ★", "bold green"))
                else:
                    cells.append(output.text(value, "yellow" if differs else ""))
            table.add_row(f"  {key}", *cells)
        if section == "eval_metrics":
            table.add_row("  evaluated by", *(_evaluated_by(data, r) for r in data["runs"]))
    environment = data["environment"]
    if environment["values"] and environment["values"]["python"]:
        table.add_row(output.text("environment", "bold"))
        packages = {
            f"  {name}": versions
            for name, versions in environment["packages"].items()
            if all(versions.values())  # in every run, in other versions
        }
        rows = {f"  {key}": values for key, values in environment["values"].items()}
        for key, values in {**rows, **packages}.items():
            differs = len({repr(v) for v in values.values()}) > 1
            cells = [fmt_value(values.get(run_id)) for run_id in data["runs"]]
            table.add_row(key, *(output.text(c, "yellow" if differs else "") for c in cells))
    output.print_table(table)
    output.err().print(
        "yellow: differs · ★ best (lowest for loss/error-like metrics, highest otherwise)",
        style="dim",
    )
    for warning in environment["warnings"]:
        output.err().print(f"warning: {warning}")


def _evaluated_by(data: dict, run_id: str) -> str:
    """Which run's evaluation a compared run's evaluation metrics come from."""
    by, count = data["evaluated_by"][run_id], data["evaluations"][run_id]
    if by is None:
        return "-"
    return ("this run" if by == run_id else by) + (f" (latest of {count})" if count > 1 else "")


@app.command()
def logs(
    run_id: RunIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the run ends.")
    ] = False,
    local: LocalOpt = False,
) -> None:
    """Print a run's output (stdout and stderr); --follow attaches to a running one."""

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()

    server = _server(local)
    try:
        if server is not None:
            from mllib.client.views import follow_log as follow_remote

            with server.http:
                status = follow_remote(server, run_id, write, follow=follow)
        else:
            from mllib.runs.control import follow_log

            status = follow_log(_ws(read_only=True), run_id, write, follow=follow)
    except KeyboardInterrupt:
        output.err().print(f"\nDetached; the run goes on. Stop it with: mllib runs cancel {run_id}")
        raise typer.Exit(0) from None
    if follow:
        output.err().print(output.text(f"Run {run_id} ") + status_text(status))


@app.command()
def plot(
    run_ids: Annotated[
        list[str], typer.Argument(help="One or more run ids.", autocompletion=completion.run_ids)
    ],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric to draw.")],
    output_: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write a PNG instead (needs matplotlib).", show_default=False
        ),
    ] = None,
) -> None:
    """Draw metric curves of runs in the terminal."""
    from mllib.runs.plot import plot as draw

    console = output.out()
    color = not output.plain() and console.is_terminal
    drawing = draw(
        _ws(read_only=True),
        run_ids,
        metric,
        output=output_,
        width=min(console.width, 120),
        color=color,
    )
    print(drawing)


@app.command()
def cancel(run_id: RunIdArg, local: LocalOpt = False) -> None:
    """Stop a queued or running run and every process it started."""
    server = _server(local)
    if server is not None:
        from mllib.client.views import cancel as cancel_remote

        with server.http:
            data = cancel_remote(server, run_id)
        output.err().print(f"Run {data['id']} {status_text(data['status'])}")
        return
    from mllib.runs.control import cancel as cancel_run

    record = cancel_run(_ws(), run_id)
    output.err().print(output.text(f"Run {record.id} ") + status_text(record.status))


@app.command()
def rerun(
    run_id: RunIdArg,
    detach: Annotated[bool, typer.Option("--detach", help="Start in the background.")] = False,
    local: LocalOpt = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the new run as JSON when it ends.")
    ] = False,
) -> None:
    """Run a recorded run again: same code (as recorded), params, seed and runtime."""
    server = _server(local)
    if server is not None:
        _rerun_on_server(server, run_id, detach)
        return
    from mllib.cli.run_output import announce, finish, stderr_echo
    from mllib.runs import api
    from mllib.workspace import Workspace

    ws = Workspace.find()
    echo = {"echo": stderr_echo} if json_ else {}
    record = api.rerun(run_id, detach=detach, on_prepared=announce, ws=ws, **echo)
    finish(ws, record, detach, json_=json_)


def _rerun_on_server(server, run_id: str, detach: bool) -> None:
    """Queue the run again there; follow its log unless `detach` (Ctrl-C detaches)."""
    from mllib.client.backend import queued_note
    from mllib.client.views import follow_log, rerun
    from mllib.project import Project

    with server.http:
        answer = rerun(server, run_id, Project.find().env_values("remote"))
        output.err().print(queued_note(answer, server.url), markup=False, highlight=False)
        if detach:
            print(answer["id"])
            return

        def write(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

        try:
            status = follow_log(server, answer["id"], write, follow=True)
        except KeyboardInterrupt:
            output.err().print(f"\nDetached; run {answer['id']} goes on on the server.")
            raise typer.Exit(0) from None
    output.err().print(f"Run {answer['id']} {status_text(status)}")
    if status != "succeeded":
        raise typer.Exit(130 if status == "cancelled" else 1)


@app.command()
def artifacts(
    run_id: RunIdArg,
    output_dir: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder to write the run's artifacts and model into."),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files the folder already holds.")
    ] = False,
) -> None:
    """Copy a run's artifacts and model out of the store into a folder."""
    from mllib.runs.export import export_artifacts

    for path in export_artifacts(_ws(), run_id, output_dir, force=force):
        print(output.printable(path))


@app.command("rm")
def rm(
    run_ids: Annotated[
        list[str],
        typer.Argument(help="Run ids (or unique prefixes).", autocompletion=completion.run_ids),
    ],
    json_: Annotated[bool, typer.Option("--json", help="Print what was removed as JSON.")] = False,
    local: LocalOpt = False,
) -> None:
    """Remove finished runs: their records, folders and the stored model, files and code that
    no other run or deployment uses. Refused for a run in use (active, deployed, aliased, a
    study's trial, or evaluated by a run not removed with it)."""
    from mllib.errors import UsageError
    from mllib.runs.removal import remove_runs

    if _server(local) is not None:
        raise UsageError(
            "Runs on the team server are not removed from here",
            hint="Give --local to remove this project's own runs.",
        )
    removed = remove_runs(_ws(), run_ids)
    if json_:
        output.print_json(removed.as_dict())
        return
    kept = (
        f"; {removed.kept_recent} kept for now (stored in the last 10 minutes)"
        if removed.kept_recent
        else ""
    )
    output.err().print(
        f"Removed {len(removed.runs)} run(s): {removed.objects} stored object(s), "
        f"{removed.bytes_freed / 1e6:.1f} MB freed{kept}.",
        markup=False,
    )
    for run_id in removed.runs:
        print(run_id)
