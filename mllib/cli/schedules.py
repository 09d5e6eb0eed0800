"""`mllib schedules list|rm|run-now|run-due|install`, and `mllib evaluate --every`: scheduled
evaluations (mllib.schedules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mllib.cli import output
from mllib.cli.output import fmt_time, fmt_value, styled
from mllib.errors import UsageError

app = typer.Typer(
    help="Scheduled evaluations (`mllib evaluate --model NAME@prod --every 1d`): list, remove, "
    "run now, and install the timer that runs them.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
IdArg = Annotated[str, typer.Argument(metavar="SCHEDULE_ID", help="The schedule's id.")]
EXIT_BREACHED = 1


def _ws():
    from mllib.workspace import Workspace

    return Workspace.find()


def schedule_evaluation(
    ref: str,
    every: str,
    *,
    best: str | None,
    data: list[str] | None,
    fail_under: list[str] | None,
    runtime: str | None,
    local: bool = False,
    param_env: list[str] | None = None,
) -> None:
    """Store `mllib evaluate --model REF ... --every PERIOD` as a schedule, on the team server
    when one is configured (and not `local`); prints its id."""
    from mllib.client import schedules as remote
    from mllib.runs.gates import parse_gates
    from mllib.schedules.runner import create

    gates = parse_gates(fail_under)
    if _server(local) is not None:
        if best or runtime:
            raise UsageError(
                f"{'--best' if best else '--runtime'} schedules on this machine only: add --local",
                hint="The team server evaluates NAME, NAME:VERSION or NAME@ALIAS on its agents.",
            )
        from mllib.project import Project

        env = remote.run_env(Project.find(), param_env or [])
        made = _ask(local, remote.create_for_model, ref, every, gates, data, env)
        _print_server_schedule(made)
        return
    schedule, now = create(_ws(), ref, every, best=best, data=data, gates=gates, runtime=runtime)
    deployed = f", deployed in {now.env}" if now.env else ""
    console = output.err()
    console.print(
        styled("[green]✔[/] Scheduled [bold]{}[/]: every {}", schedule.id, schedule.every)
    )
    console.print(f"  {schedule.command()}", markup=False, highlight=False)
    console.print(f"  Now that is {now.chosen.label}{deployed}.", markup=False, highlight=False)
    console.print(f"  Run it now:       mllib schedules run-now {schedule.id}", markup=False)
    console.print(
        "  Run it on time:   mllib schedules install (a systemd timer; --cron for a cron line)",
        markup=False,
    )
    print(schedule.id)


def _print_server_schedule(made: dict[str, Any]) -> None:
    console = output.err()
    console.print(
        styled(
            "[green]✔[/] Scheduled [bold]{}[/] on the team server: every {}",
            made["id"],
            made["every"],
        )
    )
    console.print(f"  {made['command']}", markup=False, highlight=False)
    deployed = made.get("deployment")
    where = f", deployed in {deployed['env']} by {deployed['user']}" if deployed else ""
    console.print(
        f"  Now that is {made['version']}{where}: its first evaluation is run "
        f"{made['first_run_id']}.",
        markup=False,
        highlight=False,
    )
    console.print(f"  Next: {fmt_time(made['next_due_at'])}", markup=False)
    console.print(f"  Run it now:       mllib schedules run-now {made['id']}", markup=False)
    print(made["id"])


LocalOpt = Annotated[
    bool, typer.Option("--local", help="This project's schedules, not the team server's.")
]


def _server(local: bool) -> Any:
    """The team server the schedules live on (one is configured and --local not given)."""
    from mllib.cli.account import team_server

    return team_server(local)


def _ask(local: bool, request: Any, *args: Any) -> Any:
    """`request(server, *args)` against the team server, or None when there is none."""
    from mllib.cli.account import ask_team_server

    return ask_team_server(local, request, *args)


@app.command()
def add(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="One of your evaluation runs on the server.")
    ],
    every: Annotated[
        str,
        typer.Option("--every", metavar="PERIOD", help="How often: 30m, 6h, 1d or 1w."),
    ],
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            help="KEY=NAME@VERSION keeps reading that version; KEY=NAME (or no --data) reads "
            "the newest each time. Repeatable.",
            show_default=False,
        ),
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="A gate, METRIC=NUMBER: a run whose METRIC is under it shows as `breached`. "
            "Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Have the team server repeat one of your evaluation runs every PERIOD, on the newest
    version of each dataset it read (but those --data pins with @VERSION). Prints its id."""
    from mllib.client import schedules as remote
    from mllib.project import Project
    from mllib.runs.gates import parse_gates

    gates = parse_gates(fail_under)
    env = remote.run_env(Project.find(), [])
    made = _ask(False, remote.create, run_id, every, gates, data, env)
    if made is None:
        raise UsageError(
            "`mllib schedules add` schedules a run on a team server, and none is configured",
            hint="Schedule here with `mllib evaluate --model NAME@prod --every 1d`.",
        )
    console = output.err()
    console.print(styled("[green]✔[/] Scheduled [bold]{}[/] on the team server", made["id"]))
    console.print(f"  {made['command']}", markup=False, highlight=False)
    console.print(f"  Next: {fmt_time(made['next_due_at'])}", markup=False)
    print(made["id"])


@app.command("list")
def list_(
    json_: JsonOpt = False,
    local: LocalOpt = False,
    all_: Annotated[bool, typer.Option("--all", help="Everyone's (admins, on a server).")] = False,
) -> None:
    """Every schedule: what it evaluates, how often, when next, and how its last run went (on a
    team server: yours, which the server runs)."""
    from mllib.client import schedules as remote
    from mllib.schedules.views import list_schedules

    found = _ask(local, remote.list_schedules, all_)
    if found is None:
        found = list_schedules(_ws())
    if json_:
        output.print_json(found)
        return
    if not found:
        output.err().print(
            "No schedules yet. Add one with `mllib evaluate --model NAME@prod --every 1d`."
        )
        return
    table = output.table("ID", "EVALUATES", "EVERY", "NEXT", "LAST RUN", "STATUS", "METRICS")
    for s in found:
        last = s["last"] or {}
        metrics = " ".join(
            f"{k}={fmt_value(v)}" for k, v in (last.get("eval_metrics") or {}).items()
        )
        problems = "; ".join([*(last.get("breaches") or []), *filter(None, [s.get("last_error")])])
        metrics = f"{metrics} ({problems})" if metrics and problems else metrics or problems
        version = f" (v{last['version']})" if last.get("version") else ""
        table.add_row(
            s["id"],
            s["model_ref"] + version,
            s["every"],
            fmt_time(s["next_due_at"]),
            fmt_time(last["started_at"]) if last else "never",
            last.get("status") or "",
            metrics or last.get("error") or "",
        )
    output.print_table(table)


@app.command()
def show(schedule_id: IdArg, json_: JsonOpt = False, local: LocalOpt = False) -> None:
    """One schedule and its latest runs: the version, the deployment, the metrics, the gates."""
    from mllib.client import schedules as remote
    from mllib.schedules.views import show_schedule

    data = _ask(local, remote.show, schedule_id)
    if data is None:
        data = show_schedule(_ws(), schedule_id)
    if json_:
        output.print_json(data)
        return
    console = output.out()

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    line(f"{data['id']}: {data['command']}")
    line(f"  next: {fmt_time(data['next_due_at'])}")
    for r in data["runs"]:
        where = f" {r['env']} ({r['deployment_id']})" if r["deployment_id"] else ""
        metrics = " ".join(f"{k}={fmt_value(v)}" for k, v in r["eval_metrics"].items())
        problem = "; ".join(r["breaches"]) or r["error"] or ""
        version = f"v{r['version']}" if r["version"] else "-"
        line(
            f"  {fmt_time(r['started_at'])}  {r['status']:<9} {version}{where}  run {r['run_id']}"
            f"  {metrics}  {problem}".rstrip()
        )


@app.command()
def rm(schedule_id: IdArg, local: LocalOpt = False) -> None:
    """Remove a schedule (its evaluation runs stay in the registry)."""
    from mllib.client import schedules as remote
    from mllib.schedules.records import remove

    removed = _ask(local, remote.remove, schedule_id)
    if removed is not None:
        output.err().print(f"Removed {removed['id']}: {removed['command']}", markup=False)
        return
    schedule = remove(_ws().registry, schedule_id)
    output.err().print(f"Removed {schedule.id}: {schedule.command()}", markup=False)


DetachOpt = Annotated[
    bool,
    typer.Option(
        "--detach", help="On a team server: queue the run, print its id and return at once."
    ),
]


@app.command("run-now")
def run_now(schedule_id: IdArg, local: LocalOpt = False, detach: DetachOpt = False) -> None:
    """Run a schedule now (its next time stays as it was), showing its output, then how it went;
    exit 1 when a --fail-under gate breaks or the evaluation fails. On a team server the run is
    queued there and followed here (Ctrl-C detaches; it goes on there)."""
    from mllib.schedules.records import get
    from mllib.schedules.runner import run

    server = _server(local)
    if server is not None:
        _run_now_on_server(server, schedule_id, detach)
        return
    if detach:
        raise UsageError(
            "--detach queues a run on the team server; this project's schedules run here",
            hint="Drop --detach.",
        )
    ws = _ws()
    outcome = run(ws, get(ws.registry, schedule_id))
    _print_outcomes([outcome])


def _run_now_on_server(server: Any, schedule_id: str, detach: bool) -> None:
    """Queue the schedule's run on the team server; unless `detach`, follow its log and print
    how it went as a local run-now does (exit 1 when it did not pass)."""
    import sys

    from mllib.client import schedules as remote
    from mllib.client.views import follow_log

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()

    console = output.err()
    with server.http:
        queued = remote.run_now(server, schedule_id)
        run_id = queued["id"]
        if detach:
            console.print(
                f"Queued {run_id} for {schedule_id} on the team server.",
                markup=False,
                highlight=False,
            )
            print(run_id)
            return
        console.print(
            f"Queued {run_id} for {schedule_id} on {server.url} (Ctrl-C detaches).",
            markup=False,
            highlight=False,
        )
        try:
            follow_log(server, run_id, write, follow=True)
            ended = remote.ended_run(server, schedule_id, run_id)
        except KeyboardInterrupt:
            console.print(f"\nDetached; run {run_id} goes on on the server.", markup=False)
            raise typer.Exit(0) from None
    version = ended.get("version")
    what = f"{ended['model']} v{version}" if version else ended["model"]
    metrics = ended.get("eval_metrics") or {}
    problems = ended.get("breaches") or ([ended["error"]] if ended.get("error") else [])
    passed = _print_outcome(
        schedule_id, ended["status"], what, ended.get("env"), run_id, metrics, problems
    )
    if not passed:
        raise typer.Exit(EXIT_BREACHED)


@app.command("run-due")
def run_due() -> None:
    """Run every schedule that is due: what the timer `mllib schedules install` writes calls each
    minute. Exit 1 when any breaks a gate or fails."""
    from mllib.schedules.runner import run_due as run_all

    _print_outcomes(run_all(_ws()))


@app.command()
def install(
    cron: Annotated[
        bool, typer.Option("--cron", help="Print a crontab line instead of writing systemd units.")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to write the systemd units (default: ~/.config/systemd/user).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite units there with other content.")
    ] = False,
) -> None:
    """Have this machine run the due schedules each minute: a systemd user timer (default), or a
    cron line: until a team server runs schedules, this is their scheduler."""
    from mllib.schedules import install as installer

    root = _ws().project.root
    console = output.err()
    if cron:
        console.print("Add this line to your crontab (`crontab -e`):", markup=False)
        print(installer.cron_install(root))
        return
    written = installer.write_systemd(root, directory, force=force)
    unit = written[1].name
    console.print(f"Wrote {written[0]} and {written[1]}.", markup=False)
    if directory is None:
        console.print(
            f"Start it: systemctl --user daemon-reload && systemctl --user enable --now {unit}\n"
            "Keep it running when you log out: loginctl enable-linger",
            markup=False,
        )
    else:
        console.print(
            f"Copy them to /etc/systemd/system (or ~/.config/systemd/user), then: "
            f"systemctl daemon-reload && systemctl enable --now {unit}",
            markup=False,
        )


def _print_outcomes(outcomes: list[Any]) -> None:
    """One line per run of a schedule; exit 1 when any did not pass."""
    if not outcomes:
        output.err().print("No schedule is due.")
    passed = [
        _print_outcome(
            o.schedule.id,
            o.status,
            o.resolved.chosen.label if o.resolved else o.schedule.model_ref,
            o.resolved.env if o.resolved else None,
            o.run.id if o.run else None,
            o.eval_metrics,
            o.breaches or ([o.error] if o.error else []),
        )
        for o in outcomes
    ]
    if not all(passed):
        raise typer.Exit(EXIT_BREACHED)


def _print_outcome(
    schedule_id: str,
    status: str,
    what: str,
    env: str | None,
    run_id: str | None,
    metrics: dict[str, Any],
    problems: list[str],
) -> bool:
    """How one run of a schedule went, in one line and its problems below; whether it passed."""
    where = f" in {env}" if env else ""
    run = f" run {run_id}" if run_id else ""
    values = " ".join(f"{k}={fmt_value(v)}" for k, v in metrics.items())
    ok = status == "succeeded"
    mark = "[green]✔[/]" if ok else "[red]✘[/]"
    text = f"{schedule_id} {status}: {what}{where}{run} {values}".rstrip()
    console = output.err()
    console.print(styled(mark + " {}", text), highlight=False)
    for problem in problems:
        console.print(f"  {problem}", markup=False, highlight=False)
    return ok
